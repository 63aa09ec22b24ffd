"""The periodic loop: progress of running stages, re-checks of spec problems, and pruning of the cache.

It reads; reconcile computes the status from what it read (whole_status) and writes it. One loop for all
trainings (a kopf timer would put a finalizer on every training; this loop needs none). Each round
spends at most the progress budget (api_budget), so the API load stays flat however many trainings run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from im2txt_operator import conditions as cond
from im2txt_operator import logs, names
from im2txt_operator.api_budget import due
from im2txt_operator.controller.cache import Entry, Key
from im2txt_operator.controller.context import Context
from im2txt_operator.controller.evaluating import read_evaluation, wanted
from im2txt_operator.controller.reconcile import reconcile
from im2txt_operator.pod_problems import pods_overdue
from im2txt_operator.pod_reads import read_pods
from im2txt_operator.whole_status import Look, Progress

log = logging.getLogger("im2txt_operator")

CONCURRENCY = 8  # trainings looked at together in one round


def wants_a_look(entry: Entry) -> bool:
    """Whether a round has something to read for this training: a running stage's progress, a queued stage's
    Kueue reason, a pod that could not
    start, a spec problem to check again, or an evaluation still to record (a Succeeded training whose last
    checkpoint is being evaluated; otherwise a Succeeded or Failed training costs nothing)."""
    status = (entry.body or {}).get("status") or {}
    return entry.pod_problem is not None or status.get("phase") in ("Running", "Queued") or (
        status.get("phase") != "Failed" and not cond.is_true(status.get("conditions"), "Ready")) or wanted(
        entry.body or {})


# The prune lists every training (metadata only); the server spends about 0.5 ms on each (2.4 s at 5,000). Up to
# this many trainings it runs every round; above, every ceil(N / this) rounds, so it never costs the server more
# than about a quarter second a round (a training deleted without an event is forgotten within 5 min at 5,000).
PRUNE_EVERY_ROUND = 500


def prune_every(trainings: int) -> int:
    """Rounds between two prunes of a cache of ``trainings``."""
    return max(1, -(-trainings // PRUNE_EVERY_ROUND))


async def run(ctx: Context) -> None:
    """Every ``ctx.interval`` seconds, one round, its looks spread over the interval."""
    looked_at: dict[Key, float] = {}
    since_prune = 0
    await asyncio.sleep(ctx.interval)
    while True:
        started = time.monotonic()
        since_prune += 1
        pruning = since_prune >= prune_every(len(ctx.cache.entries))
        await one_round(ctx, looked_at, spread=ctx.interval, pruning=pruning)
        since_prune = 0 if pruning else since_prune
        await asyncio.sleep(max(0.0, ctx.interval - (time.monotonic() - started)))


async def one_round(ctx: Context, looked_at: dict[Key, float], spread: float = 0.0, pruning: bool = True) -> list[Key]:
    """Prune the cache (when ``pruning``), then look at the trainings that want a look, as many as the progress
    budget allows (api_budget), those looked at longest ago (``looked_at``: monotonic times, kept between rounds)
    first, the looks started evenly over ``spread`` seconds: a round's reads all at once queued the stage
    transitions' writes behind them in the client's rate limit."""
    try:
        if pruning:
            await prune(ctx)
    except Exception as exc:  # best effort; the next round retries
        log.debug("pruning the cache: %s", logs.short(exc))
    entries = {k: e for k, e in ctx.cache.items() if wants_a_look(e)}
    for gone in looked_at.keys() - entries.keys():
        del looked_at[gone]
    chosen = due(looked_at, entries, ctx.budget.looks_per_round(ctx.interval))
    now = time.monotonic()
    looked_at.update((k, now) for k in chosen)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int, key: Key, entry: Entry) -> None:
        await asyncio.sleep(i * spread / len(chosen))
        async with sem:
            try:
                await look(ctx, key, entry)
            except Exception as exc:  # best effort; the next round retries
                log.debug("a look at %s/%s: %s", *key, logs.short(exc), extra=logs.of(*key, entry.body))

    await asyncio.gather(*(one(i, k, entries[k]) for i, k in enumerate(chosen)))
    return chosen


async def look(ctx: Context, key: Key, entry: Entry) -> None:
    """One look: read the pods of a stage that runs or could not start, and the evaluation pod, then reconcile with
    what they said (one status patch at most); or reconcile to check a problem, or a Kueue reason, again."""
    status = (entry.body or {}).get("status") or {}
    progress = await read_progress(ctx, key, entry) if (
        entry.pod_problem is not None or status.get("phase") == "Running") else None
    evaluated = await read_evaluation(ctx, key, entry)
    problem = status.get("phase") != "Failed" and not cond.is_true(status.get("conditions"), "Ready")
    waiting = entry.retry is not None and not entry.retry.done()
    if progress is None and evaluated is None and (not (problem or status.get("phase") == "Queued") or waiting):
        return  # nothing read, nothing to check (or the queue's backoff checks it)
    await reconcile(ctx, key, Look(progress, evaluated))


async def prune(ctx: Context) -> None:
    """Forget what the API no longer has. A training deleted while a watch re-lists (410 Gone) or with its CRD
    brings no DELETED event; one metadata-only list per namespace and tick finds it. Expired claim checks go."""
    ctx.checks.prune()
    snapshot = {key: entry.uid() for key, entry in ctx.cache.items()}
    for namespace in sorted({ns for ns, _ in snapshot}):
        # Read after the snapshot, from the server's cache but at least as fresh as the newest training the watch
        # showed: it holds every training still there (a consistent read of 1,000 took the server 4.5 s).
        listed = await ctx.kube.training_uids(namespace, newest_version(ctx, namespace))
        for key, uid in snapshot.items():
            if key[0] != namespace or (listed is not None and key[1] in listed and uid in (None, listed[key[1]])):
                continue
            now = ctx.cache.get(key)
            if (now.uid() if now is not None else None) == uid:  # unchanged since the snapshot (no newer event)
                ctx.cache.forget(key)
                log.info("training %s/%s is gone from the API; forgotten", *key,
                         extra=logs.of(*key, now.body if now is not None else None))


def newest_version(ctx: Context, namespace: str) -> str | None:
    """The newest resourceVersion of a training of the namespace the cache holds (None: none is an integer)."""
    versions = [int(rv) for key, entry in ctx.cache.items() if key[0] == namespace
                and str(rv := ((entry.body or {}).get("metadata") or {}).get("resourceVersion") or "").isdigit()]
    return str(max(versions)) if versions else None


async def read_progress(ctx: Context, key: Key, entry: Entry) -> Progress | None:
    """One look at the running stage's pods: one pod list, one or two log reads (none when no pod started). The
    same list tells whether the stage's pod cannot start (pod_problems, kept in the entry). None: no stage Job."""
    body = entry.body
    if body is None:
        return None
    namespace = key[0]
    status = body.get("status") or {}
    job_name, target = status.get("jobName"), status.get("target")
    if not job_name or not isinstance(target, int):
        return None
    pods = await ctx.kube.list_pods(namespace, job_name)
    job = entry.jobs.get(names.stage_role(status.get("stage") or 1)) or {}
    # No pod at all of a Job that should have some by now: the Job controller's Events say why (a quota, a policy).
    asks = not pods and not (job.get("spec") or {}).get("suspend") and pods_overdue(job, ctx.now())
    failed = await ctx.kube.failed_creates(namespace, job_name) if asks else []
    entry.read_pod_problem(job_name, pods, failed)
    output = str((body.get("spec") or {}).get("outputPath") or "")
    reads = await read_pods(ctx.kube, namespace, job_name, syncs=output.startswith("ufile://"), pods=pods)
    return Progress(job_name, reads, time.monotonic())
