"""The kopf wiring, and nothing else: startup and cleanup, the training and Job event handlers, the Jobs index.

Handlers are ``on.event`` handlers and an index, so kopf writes nothing of its own to the trainings (no finalizers,
no progress annotations). Startup makes the operator's one Context and puts it in kopf's memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from im2txt_operator import logs
from im2txt_operator.api_budget import ApiBudget, TokenBucket
from im2txt_operator.controller import context, poller
from im2txt_operator.controller.cache import job_key, slim
from im2txt_operator.controller.context import METRICS_PORT, PROGRESS_INTERVAL, Context
from im2txt_operator.controller.essence import NoEssence
from im2txt_operator.controller.owned import controlled_by_a_training
from im2txt_operator.controller.reconcile import reconcile, retry_soon
from im2txt_operator.job_state import facts
from im2txt_operator.kube import Kube
from im2txt_operator.metrics import Metrics
from im2txt_operator.pods import LABEL_MANAGED_BY, MANAGED_BY
from im2txt_operator.spec import GROUP, PLURAL, UFILE_DOMAINS, VERSION

log = logging.getLogger("im2txt_operator")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Settle kopf's settings and make the Context from what ``run`` put in the memo (metrics, port, interval,
    UFile domains, the leader's fence)."""
    # Watch only our own Jobs, filtered by the API server: memory stays flat beside unrelated Jobs.
    settings.watching.label_selectors["batch", "jobs"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    # Our transitions are posted with kopf.event(); kopf's own "Handler succeeded" lines stay out of Events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "im2txt-operator"
    settings.watching.server_timeout = 600
    settings.persistence.diffbase_storage = NoEssence()  # no on.create/on.update handlers read it (essence.py)
    # Leader-elected: the client writes nothing once the Lease may have passed to another replica (its fence).
    budget = memo.get("budget") or ApiBudget()
    ctx = Context(kube=Kube(fence=memo.get("fence"), limit=TokenBucket(budget.qps, budget.burst)),
                  metrics=memo.get("metrics") or Metrics(),
                  interval=float(memo.get("progress_interval") or PROGRESS_INTERVAL),
                  metrics_port=int(memo.get("metrics_port", METRICS_PORT)),
                  ufile_domains=tuple(memo.get("ufile_domains") or UFILE_DOMAINS), budget=budget,
                  ufile_insecure_http=bool(memo.get("ufile_insecure_http")))
    memo[context.MEMO_KEY] = ctx
    ctx.metrics.leader.set(1)  # the operator runs: standalone, or this process holds the Lease
    if ctx.metrics_port:
        try:
            ctx.metrics.serve(ctx.metrics_port)
        except OSError as e:  # metrics are auxiliary: never keep the operator from running
            log.warning("metrics endpoint on port %s not started: %s", ctx.metrics_port, e)


def _ensure_loop(ctx: Context) -> None:
    """Start the periodic loop from inside a handler: its task then inherits kopf's context (kopf.event()
    needs the operator's settings and event queue, which a task started at startup does not see)."""
    if ctx.loop_task is None:
        ctx.loop_task = asyncio.create_task(poller.run(ctx), name="im2txt-progress")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = memo.get(context.MEMO_KEY)
    if not isinstance(ctx, Context):
        return
    if ctx.loop_task is not None:
        ctx.loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ctx.loop_task
    for _key, entry in ctx.cache.items():
        if entry.retry is not None:
            entry.retry.cancel()
    await ctx.kube.close()


def _handed(memo: Mapping[str, Any], index: kopf.Index[Any, Any]) -> Context:
    ctx = context.of(memo)
    ctx.index = index
    _ensure_loop(ctx)
    return ctx


@kopf.on.event(GROUP, VERSION, PLURAL)
async def training_event(event: Mapping[str, Any], training_jobs: kopf.Index[Any, Any], memo: kopf.Memo,
                         **_: Any) -> None:
    ctx = _handed(memo, training_jobs)
    obj = dict(event["object"])
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    if event.get("type") == "DELETED":
        # The Jobs are owned by the training: the garbage collector deletes them. The data stays.
        ctx.cache.forget(key)
        log.info("training %s/%s deleted; its Jobs go with it (ownerReferences)", *key, extra=logs.of(*key, obj))
        return
    entry = ctx.cache.saw(key, obj)
    if not entry.is_own(obj):
        await reconcile(ctx, key)


@kopf.index("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def training_jobs(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]] | None:
    """Our Jobs by training. kopf fills all indexes before any handler runs, so after a restart the first
    reconcile of a training already sees its Jobs (no create attempts that would only answer 409). Only Jobs a
    training controls: anyone may put our labels on a Job, and the index must not grow with theirs. Async: kopf
    runs a plain function in a thread, a hand-off per Job event that cost more than the work."""
    found = job_key(body)
    return {found[0]: slim(body)} if found and controlled_by_a_training(body) else None


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def job_event(event: Mapping[str, Any], training_jobs: kopf.Index[Any, Any], memo: kopf.Memo,
                    **_: Any) -> None:
    ctx = _handed(memo, training_jobs)
    obj = dict(event["object"])
    found = job_key(obj)
    if found is None:
        return
    key, role = found
    entry = ctx.cache.get(key)
    if event.get("type") == "DELETED":
        if entry is not None and entry.jobs.get(role, {}).get("metadata", {}).get("uid") == obj["metadata"].get("uid"):
            del entry.jobs[role]
            # The garbage collector deletes Jobs after their training; the two watches are not ordered, so ask
            # the API whether the training still exists before re-creating a deleted Job.
            try:
                current = await ctx.kube.get_training(*key)
            except Exception as e:  # the API is unreachable: decide later, with the backoff of reconcile
                log.warning("reading training %s/%s failed (%s); retrying", *key, logs.short(e),
                            extra=logs.of(*key, entry.body))
                retry_soon(ctx, key, entry)
                return
            if current is None or current["metadata"].get("uid") != entry.uid():
                ctx.cache.forget(key)
                return
            ctx.cache.saw(key, current)
            await reconcile(ctx, key)
        return
    if entry is None:
        # No training seen under that key (not yet, or gone): its own event reconciles it, reading the Jobs from
        # the index. Making an entry here would bring a gone training's Jobs back into the cache until they go.
        return
    before = entry.jobs.get(role)
    entry.keep_job(role, obj, training_jobs.get(key, ()))
    if entry.is_own(obj) or (before is not None and facts(before) == facts(entry.jobs[role])):
        return  # the echo of our own write, or nothing a reconcile reads changed (job_state.facts)
    await reconcile(ctx, key)
