"""The wiring, and nothing else: kopf's startup and cleanup and its training event handler; our own Jobs watch.

The trainings' handler is an ``on.event`` handler, so kopf writes nothing of its own to them (no finalizers, no
progress annotations). Startup makes the operator's one Context, puts it in kopf's memo, and lists and watches our
Jobs (job_watch: lighter than kopf's per-event machinery, the Jobs bring most of the events).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from im2txt_operator import logs, loop_lag
from im2txt_operator.api_budget import ApiBudget, TokenBucket
from im2txt_operator.controller import context, job_watch, poller
from im2txt_operator.controller.cache import Entry, Key, job_key
from im2txt_operator.controller.context import METRICS_PORT, PROGRESS_INTERVAL, Context
from im2txt_operator.controller.essence import NoEssence
from im2txt_operator.controller.reconcile import reconcile, reconcile_soon, retry_soon
from im2txt_operator.job_state import facts
from im2txt_operator.kube import Kube
from im2txt_operator.metrics import Metrics
from im2txt_operator.spec import GROUP, PLURAL, UFILE_DOMAINS, VERSION

log = logging.getLogger("im2txt_operator")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Settle kopf's settings and make the Context from what ``run`` put in the memo (metrics, port, interval,
    UFile domains, the leader's fence)."""
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
    ctx.background.append(asyncio.create_task(loop_lag.probe(ctx.metrics.loop_lag), name="im2txt-loop-lag"))
    await _watch_jobs(ctx, memo.get("scope"))
    ctx.metrics.leader.set(1)  # the operator runs: standalone, or this process holds the Lease
    if ctx.metrics_port:
        try:
            ctx.metrics.serve(ctx.metrics_port)
        except OSError as e:  # metrics are auxiliary: never keep the operator from running
            log.warning("metrics endpoint on port %s not started: %s", ctx.metrics_port, e)


async def _watch_jobs(ctx: Context, scope: Sequence[str] | None) -> None:
    """List our Jobs in each namespace watched (``scope`` None: all), then watch them in tasks of their own. kopf
    runs no handler before startup ends, so the first reconcile after a restart already sees every Job (no create
    that would only answer 409). A list that fails is tried again, with the watch's backoff."""
    def handle(kind: str, job: dict[str, Any]) -> None:
        job_changed(ctx, kind, job)

    for namespace in (None,) if scope is None else scope:
        version = await job_watch.first_sync(ctx.kube, namespace, ctx.jobs, handle)
        ctx.background.append(asyncio.create_task(
            job_watch.follow(ctx.kube, namespace, ctx.jobs, handle, version),
            name=f"im2txt-jobs-watch-{namespace or 'all'}"))


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
    for task in [t for t in (ctx.loop_task, *ctx.background, *ctx.tasks) if t is not None]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for _key, entry in ctx.cache.items():
        if entry.retry is not None:
            entry.retry.cancel()
    await ctx.kube.close()


def _handed(memo: Mapping[str, Any]) -> Context:
    ctx = context.of(memo)
    if ctx.handler_context is None:
        ctx.handler_context = contextvars.copy_context()
    _ensure_loop(ctx)
    return ctx


@kopf.on.event(GROUP, VERSION, PLURAL)
async def training_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    ctx = _handed(memo)
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


def job_changed(ctx: Context, kind: str, job: dict[str, Any]) -> None:
    """A watch event of one of our Jobs (job_watch; ``job`` slim, the index's copy): a reconcile of its training,
    asked for and coalesced, when it changed something a reconcile reads."""
    found = job_key(job)
    if found is None:
        return
    key, role = found
    entry = ctx.cache.get(key)
    if entry is None:
        # No training seen under that key (not yet, or gone): its own event reconciles it, reading the Jobs from
        # the index. Making an entry here would bring a gone training's Jobs back into the cache until they go.
        return
    if kind == "DELETED":
        if entry.jobs.get(role, {}).get("metadata", {}).get("uid") == job["metadata"].get("uid"):
            del entry.jobs[role]
            ctx.spawn(_job_deleted(ctx, key, entry))
        return
    before = entry.jobs.get(role)
    entry.keep_job(role, job)
    if entry.is_own(job) or (before is not None and facts(before) == facts(entry.jobs[role])):
        return  # the echo of our own write, or nothing a reconcile reads changed (job_state.facts)
    reconcile_soon(ctx, key)


async def _job_deleted(ctx: Context, key: Key, entry: Entry) -> None:
    """The garbage collector deletes Jobs after their training; the two watches are not ordered, so ask the API
    whether the training still exists before re-creating a deleted Job."""
    try:
        current = await ctx.kube.get_training(*key)
    except Exception as e:  # the API is unreachable: decide later, with the backoff of reconcile
        log.warning("reading training %s/%s failed (%s); retrying", *key, logs.short(e),
                    extra=logs.of(*key, entry.body))
        retry_soon(ctx, key, entry)
        return
    if current is None or current["metadata"].get("uid") != entry.uid():
        if ctx.cache.get(key) is entry:
            ctx.cache.forget(key)
        return
    ctx.cache.saw(key, current)
    await reconcile(ctx, key)
