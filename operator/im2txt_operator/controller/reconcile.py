"""One reconcile of a training: read, decide, act (the children), write status in one patch, then post Events.

Level-triggered: every event of a training or of one of its Jobs leads here, and what to do follows from the cached
objects alone. A stage transition costs at most three writes: the Job, the status patch, one Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator import export as exporting
from im2txt_operator import names
from im2txt_operator.controller.act import act, create_export, keep_evaluation, keep_tensorboard
from im2txt_operator.controller.cache import Entry, Key, owned_by
from im2txt_operator.controller.context import Context
from im2txt_operator.controller.owned import Unsettled
from im2txt_operator.controller.status_write import write_status
from im2txt_operator.decisions import CreateJob, Decision, Event, Problem, deferrable, status_patch
from im2txt_operator.evaluation import due as evaluation_due
from im2txt_operator.evaluation_status import recorded_targets
from im2txt_operator.job_state import JobState, job_state
from im2txt_operator.kube import Kube
from im2txt_operator.lifecycle import decide
from im2txt_operator.paths import UFilePath
from im2txt_operator.pod_problems import REASONS as POD_REASONS
from im2txt_operator.pod_reads import PodReads, observed_fields, read_pods
from im2txt_operator.pods import Owner
from im2txt_operator.progress import StepSample
from im2txt_operator.shared_outputs import output_in_use
from im2txt_operator.side_problems import flag
from im2txt_operator.spec import Settings, SpecError, parse_spec
from im2txt_operator.whole_status import Look, whole_status
from im2txt_operator.workloads import Hold, hold_of


async def reconcile(ctx: Context, key: Key, look: Look | None = None) -> None:
    """Reconcile the training now (after any reconcile of it that runs), retried with backoff if it fails;
    ``look``: what the poller just read of its pods, for the status."""
    entry = ctx.cache.get(key)
    if entry is None:
        return
    await ctx.queue.run(key, entry, lambda: _reconcile_locked(ctx, key, entry, look),
                        lambda: reconcile(ctx, key))


def reconcile_soon(ctx: Context, key: Key) -> None:
    """Ask for a reconcile of the training and go on: asks that come before it starts are one reconcile."""
    entry = ctx.cache.get(key)
    if entry is not None:
        ctx.queue.ask(entry, lambda: ctx.queue.run(key, entry, lambda: _reconcile_locked(ctx, key, entry),
                                                   lambda: reconcile(ctx, key), asked=True), ctx.spawn)


def retry_soon(ctx: Context, key: Key, entry: Entry) -> None:
    """Reconcile again after the first backoff delay (what could not be read now is read then)."""
    ctx.queue.retry(entry, ctx.queue.delays[0], lambda: reconcile(ctx, key))


@dataclass
class _Read:
    """What a reconcile starts from: the training as cached, its parsed spec, and a problem known already."""

    body: dict[str, Any]
    owner: Owner
    settings: Settings | None
    problem: Problem | None
    failures: dict[int, Any] = field(default_factory=dict)  # stage -> why its last pod failed (read at its end)
    holds: dict[int, Hold] = field(default_factory=dict)  # stage -> why Kueue holds its suspended Job

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    ready = cond.find(status.get("conditions"), "Ready")
    return ready.get("reason") if ready else None


async def _read(ctx: Context, key: Key, entry: Entry, body: dict[str, Any]) -> _Read:
    """Parse the spec, and recall what the API or the pods already said against it."""
    namespace, name = key
    meta = body["metadata"]
    status = body.get("status") or {}
    problem: Problem | None = None
    settings: Settings | None
    try:
        settings = parse_spec(body.get("spec"), ctx.ufile_domains, insecure_http=ctx.ufile_insecure_http)
        names.check(name)  # the name must leave room for every child's suffix
    except SpecError as e:
        settings, problem = None, Problem(e.field, "InvalidSpec", str(e))
    if problem is None and entry.rejected is not None and entry.rejected[0] == meta.get("generation"):
        problem = entry.rejected[1]  # the API refused this spec's Job: say so again, do not ask again
    if not entry.pods_read and _ready_reason(status) in POD_REASONS and status.get("jobName"):
        # Status holds a problem a pod showed before this operator started: read the pod again before status is
        # written, so that a problem that still exists is never reported fixed.
        entry.read_pod_problem(status["jobName"], await ctx.kube.list_pods(namespace, status["jobName"], None))
    if problem is None and entry.pod_problem is not None and entry.pod_problem[0] == status.get("jobName"):
        problem = entry.pod_problem[1]  # the stage's pod cannot start (e.g. its Secret is missing)
    entry.fold(ctx.jobs.get(key))
    return _Read(body, Owner(name=name, namespace=namespace, uid=meta.get("uid", "")), settings, problem)


def _observe(entry: Entry, read: _Read) -> dict[int, JobState]:
    # Jobs of another object with this name (an earlier training) are not ours to drive.
    return {s: replace(job_state(j, s), failure=read.failures.get(s), held=read.holds.get(s))
            for role, j in entry.jobs.items() if (s := names.stage_number(role)) is not None and owned_by(j, read.body)}


async def _holds(kube: Kube, namespace: str, settings: Settings | None,
                 jobs: Mapping[int, JobState]) -> dict[int, Hold]:
    """Why each suspended stage Job waits, from its Kueue Workload (one list per such Job). A Job with no queue
    label where Kueue's API is absent or unreadable has no hold: someone else suspended it."""
    if settings is None or settings.suspend:
        return {}
    out = {}
    for s, job in jobs.items():
        if job.suspended and not (job.deleting or job.succeeded or job.failed):
            found = await kube.list_workloads(namespace, job.uid)
            if found is not None or job.queue:
                out[s] = hold_of(found or (), job.queue)
    return out


async def _stage_ends(kube: Kube, namespace: str, settings: Settings | None, status: Mapping[str, Any],
                      jobs: Mapping[int, JobState], *, failed: bool) -> dict[int, PodReads]:
    """The pods of each stage whose Job failed (``failed``) or succeeded since status last recorded it (once per
    stage: then it is recorded)."""
    recorded = {e.get("stage"): e.get("outcome") for e in status.get("stages") or ()}
    syncs = settings is not None and isinstance(settings.output_path, UFilePath)
    return {s: await _ended_pods(kube, namespace, job.name, syncs) for s, job in jobs.items()
            if s in (1, 2) and (job.failed if failed else job.succeeded)
            and recorded.get(s) not in ("Succeeded", "Failed")}


async def _ended_pods(kube: Kube, namespace: str, job_name: str, syncs: bool) -> PodReads:
    """An ended stage's pods from the server's cache; read again consistently if the cache shows none
    ended yet. (Not a list at least as fresh as the Job: with etcd older than 3.5.13, which clusters still run, the
    pods' cache of a quiet cluster never reaches a resourceVersion of the Jobs: 504 "Too large resource version".)"""
    reads = await read_pods(kube, namespace, job_name, syncs=syncs)
    if any((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in reads.pods):
        return reads
    return await read_pods(kube, namespace, job_name, syncs=syncs, not_older_than=None)


async def _reconcile_locked(ctx: Context, key: Key, entry: Entry, look: Look | None = None) -> None:
    look = look or Look()
    body = entry.body
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    read = await _read(ctx, key, entry, body)
    status, generation, settings = read.status, read.generation, read.settings
    jobs = _observe(entry, read)
    # A stage that just failed: its pods once more, for why it failed and the step, loss and upload it ended with.
    observed: dict[str, Any] = {}
    last_lines: dict[int, StepSample] = {}  # each ended stage's trainer's last line: its loss may have diverged
    for s, reads in (await _stage_ends(ctx.kube, key[0], settings, status, jobs, failed=True)).items():
        read.failures[s] = reads.failure
        observed |= observed_fields(reads, final=True)
        last_lines |= {s: reads.sample} if reads.sample else {}
    read.holds = await _holds(ctx.kube, key[0], settings, _observe(entry, read))
    jobs = _observe(entry, read)
    status_in = {**status, "step": observed["step"]} if "step" in observed else status

    def decided() -> Decision:
        return decide(key[1], settings, read.problem, generation, status_in, jobs, ctx.now())

    decision = decided()
    creating = any(isinstance(a, CreateJob) for a in decision.actions)
    if read.problem is None and settings is not None and (creating or (
            status.get("phase") != "Failed" and not cond.is_true(status.get("conditions"), "Ready"))):
        read.problem = await ctx.checks.problem(ctx.kube.claim_exists, key[0], settings) or output_in_use(
            body, ctx.cache.outputs.overlapping(body))
        if read.problem is not None or not creating:
            decision = decided()

    stopped: Problem | None = None  # what stopped a child write: in status, then retried with backoff
    for _attempt in range(3):
        outcome = await act(ctx, entry, read.owner, settings, decision)
        if outcome is False:
            break
        if isinstance(outcome, Problem):
            read.problem = stopped = outcome
            if outcome.reason == "JobRejected":
                entry.rejected = (generation, outcome)
        jobs = _observe(entry, read)
        decision = decided()
        if read.problem is not None:
            break

    # A stage that just succeeded: the loss and upload it ended with, read after the next stage's Job is made (its
    # start waits for no log); the step it ended at is its target (decide).
    for s, reads in (await _stage_ends(ctx.kube, key[0], settings, status, jobs, failed=False)).items():
        observed |= observed_fields(reads, final=True)
        last_lines |= {s: reads.sample} if reads.sample else {}

    if decision.status.get("phase") != "Running":
        entry.sample = None  # the ETA's rate is of training time only: not of time queued or suspended
    export_status, export_event, side = await _export(ctx, entry, read, decision)
    url = evaluation_written = None
    if settings is not None:
        url, tensorboard_problem = await keep_tensorboard(ctx, entry, read.owner, settings, generation, status)
        trained = evaluation_due(decision.status, sum(job.ready for job in jobs.values())) or bool(
            look.progress and look.progress.reads.sample)
        evaluation_written, evaluation_problem = await keep_evaluation(ctx, entry, read.owner, settings, generation,
                                                                       status, trained=trained)
        side = side or tensorboard_problem or evaluation_problem
    side_event = None
    if side is not None and read.problem is None:  # the stages go on; Ready says what is wrong beside them
        decision, side_event = flag(decision, status, side, generation, ctx.now())
    children: dict[str, Any] = {}
    if export_status != status.get("export"):
        children["export"] = export_status
    if settings is not None and status.get("tensorboard") != url:
        children["tensorboard"] = url
    if settings is not None and (status.get("evaluation") or {}).get("generation") != evaluation_written:
        children["evaluation"] = {**(status.get("evaluation") or {}), "generation": evaluation_written}
    whole = whole_status(decision.status, ended=observed, children=children, sample=entry.sample,
                         look=look if settings is not None else Look(progress=look.progress),
                         stages=settings.stages() if settings else (),
                         targets=({s: settings.target(s) for s in (1, 2)} if settings else {})
                         | recorded_targets(decision.status), generation=generation, now=ctx.now(),
                         ended_sample=last_lines[max(last_lines)] if last_lines else None)
    patch = status_patch(status, whole.status)
    if deferrable(status, patch):
        patch = {}
    if patch and not await write_status(ctx, key, entry, body, patch):
        retry_soon(ctx, key, entry)  # decided from an old read: decide again from the training as it is now
        return
    entry.sample = whole.sample if whole.status.get("phase") == "Running" else None
    stage = decision.status.get("stage")
    if decision.event is not None:
        ctx.post(body, decision.event, stage)
        ctx.metrics.record_event(decision.event.reason, decision.status)
    for event, about in ((export_event, "export"), (side_event, stage)):
        if event is not None:
            ctx.post(body, event, about)
    for event in whole.events:  # a diverged loss, a failing evaluation
        ctx.post(entry.body or body, event, stage, logging.WARNING)
    stopped = stopped or side
    if stopped is not None and stopped.reason != "JobRejected":  # a refused spec waits for a new generation
        raise Unsettled(stopped.message)


async def _export(ctx: Context, entry: Entry, read: _Read,
                  decision: Decision) -> tuple[Any, Event | None, Problem | None]:
    """After stage 2, the export Job: (status.export, the Event to post about it, what stopped its Job)."""
    settings, status = read.settings, read.status
    if settings is None or read.problem is not None:
        return status.get("export"), None, None
    jobs = _observe(entry, read)
    stage2_done = cond.is_true(decision.status.get("conditions"), "Stage2Complete")
    export_job = entry.jobs.get(names.EXPORT)
    exported = exporting.decide(settings, read.owner.name, stage2_done, job_state(export_job, None)
                                if export_job is not None and owned_by(export_job, read.body) else None,
                                status.get("export"))
    stage2 = jobs.get(2)
    if exported.create and (problem := await create_export(ctx, entry, read.owner, settings,
                                                           stage2.image_size if stage2 else None)):
        return status.get("export"), None, problem
    return exported.status, exported.event, None
