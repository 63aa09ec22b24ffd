"""The stage state machine, pure: (settings, status, observed Jobs) -> new status + actions + event.

Decisions come from what is observed (the Jobs), plus the one thing Jobs cannot show once deleted:
the ``StageNComplete`` conditions already in status. So a restarted operator decides the same thing as the
one that stopped, whatever moment it stopped at:
- a stage whose Job succeeded, or whose StageNComplete is True, is done and never runs again;
- a stage is never skipped: the next stage's Job is only created after the previous stage is done;
- if a later stage's Job exists, earlier stages count as done (someone deleted an old Job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator import health, names
from im2txt_operator.pod_reports import OUTPUT_CHECK, ContainerFailure
from im2txt_operator.progress import percent
from im2txt_operator.spec import Settings

# Facts stamped on a stage's Job when it is made (jobs.stamps): read back, never parsed from its args.
ANNOTATION_TARGET = "im2txt.dev/target-step"
ANNOTATION_IMAGE_SIZE = "im2txt.dev/image-size"


@dataclass(frozen=True)
class JobState:
    """What the operator needs to know about one stage's Job."""

    stage: int | None  # 1 or 2; None for the export (a role, not a stage)
    name: str
    succeeded: bool = False
    failed: bool = False
    reason: str = ""
    message: str = ""
    suspended: bool = False
    active: int = 0
    ready: int = 0  # pods of the Job with a Ready condition (the Job controller's status.ready)
    failed_pods: int = 0  # pods that failed and counted against backoffLimit (status.failed)
    start_time: str | None = None
    completion_time: str | None = None
    target: int | None = None
    image_size: int | None = None  # --image_size the stage trained at
    failure: ContainerFailure | None = None  # of a failed Job: why its last failed pod failed (pod_reports)


def job_state(job: Mapping[str, Any], stage: int | None) -> JobState:
    """Read a batch/v1 Job the way the Job controller reports it (conditions Complete / Failed)."""
    meta, spec, status = job.get("metadata", {}), job.get("spec", {}), job.get("status") or {}
    succeeded = failed = False
    reason = message = ""
    completion = status.get("completionTime")
    for c in status.get("conditions") or ():
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            succeeded = True
        elif c.get("type") == "Failed":
            failed = True
            reason, message = c.get("reason") or "Failed", c.get("message") or ""
            completion = completion or c.get("lastTransitionTime")
    stamped = meta.get("annotations") or {}
    return JobState(stage=stage, name=meta.get("name", ""), succeeded=succeeded, failed=failed, reason=reason,
                    message=message, suspended=bool(spec.get("suspend")), active=int(status.get("active") or 0),
                    ready=int(status.get("ready") or 0), failed_pods=int(status.get("failed") or 0),
                    start_time=status.get("startTime"), completion_time=completion,
                    target=_stamp(stamped, ANNOTATION_TARGET), image_size=_stamp(stamped, ANNOTATION_IMAGE_SIZE))


def _stamp(annotations: Mapping[str, Any], key: str) -> int | None:
    """An integer fact stamped on a Job when it was made (jobs.stamps); None when absent."""
    value = str(annotations.get(key) or "")
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Problem:
    """A spec error the schema cannot catch (or a spec that fails parsing): names the field."""

    field: str
    reason: str  # CamelCase, e.g. SecretNotFound
    message: str  # starts with the field, e.g. "spec.credentialsSecret: Secret 'x' not found"


@dataclass(frozen=True)
class CreateJob:
    stage: int


@dataclass(frozen=True)
class SetJobSuspend:
    stage: int
    suspend: bool


Action = CreateJob | SetJobSuspend


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any]  # the whole new status; None values mean "remove"
    actions: tuple[Action, ...] = ()
    event: Event | None = None


def _failure(stage: int, job: JobState, status: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, message) of a failed stage: the failed container's own words where the pods gave them (a deadline
    is the Job's own reason: its pods were stopped, not broken). The pods are read once, when the stage ends; later
    decisions keep what status says of the same failure."""
    reason = job.reason or "JobFailed"
    recorded = cond.find(status.get("conditions"), "Failed")
    if job.failure is None and recorded is not None and recorded.get("status") == "True" and \
            status.get("stage") == stage and str(status.get("message") or "").startswith(f"stage {stage} failed: "):
        return str(recorded.get("reason") or reason), str(status["message"])
    if job.failure is None or reason == "DeadlineExceeded":
        return reason, f"stage {stage} Job {job.name} failed: {reason}" + (f": {job.message}" if job.message else "")
    if job.failure.container == OUTPUT_CHECK:
        reason = "OutputNotWritable"
    return reason, f"stage {stage} failed: {job.failure.text()}"


def _plan(settings: Settings, done: set[int], jobs: Mapping[int, JobState]) -> tuple[int, ...]:
    """Stages to run in order. ``spec.stage`` only matters before the first Job exists."""
    if 1 in jobs or 1 in done:
        first = 1
    elif 2 in jobs or 2 in done:
        first = 2
    else:
        first = settings.stage
    if first == 2:
        return (2,)
    # Once stage 2 started, turning autoAdvance off does not stop it.
    return (1, 2) if settings.auto_advance or 2 in jobs or 2 in done else (1,)


def _stage_entries(prev: list[Mapping[str, Any]], jobs: Mapping[int, JobState], name: str,
                   targets: Mapping[int, int], created: set[int]) -> list[dict[str, Any]]:
    by_stage = {int(e["stage"]): dict(e) for e in prev if "stage" in e}
    for s in (1, 2):
        job = jobs.get(s)
        if job is None and s not in created:
            continue
        entry = by_stage.get(s, {"stage": s})
        entry["jobName"] = names.stage_job(name, s)
        entry["target"] = (job.target if job and job.target else None) or targets[s]
        if job is not None:
            if job.start_time:
                entry["startTime"] = job.start_time
            if job.completion_time:
                entry["completionTime"] = job.completion_time
            entry["outcome"] = "Succeeded" if job.succeeded else "Failed" if job.failed else "Running"
        else:
            entry = {"stage": s, "jobName": names.stage_job(name, s), "target": targets[s], "outcome": "Running"}
        by_stage[s] = entry
    return [by_stage[s] for s in sorted(by_stage)]


def decide(name: str, settings: Settings | None, problem: Problem | None, generation: int | None,
           status: Mapping[str, Any] | None, jobs: Mapping[int, JobState], now: str) -> Decision:
    """Next status and actions for the training ``name``; ``now`` is an RFC 3339 timestamp."""
    status = status or {}
    prev_conds = status.get("conditions") or []
    done = {s for s in (1, 2) if cond.is_true(prev_conds, f"Stage{s}Complete") or (s in jobs and jobs[s].succeeded)}

    def conditions(phase: str, reason_done: str, failed_reason: str, plan: tuple[int, ...],
                   current: int, moving: health.Activity | None = None) -> list[dict[str, Any]]:
        # Ready's message is kubectl get -o wide's Message column: the problem, the failure, or what runs now.
        if problem is not None:
            ready = cond.condition(prev_conds, "Ready", False, problem.reason, problem.message, generation, now)
        elif phase == "Failed":
            ready = cond.condition(prev_conds, "Ready", False, failed_reason, message, generation, now)
        else:
            ready = cond.condition(prev_conds, "Ready", True, "SpecValid", message, generation, now)
        out = [ready]
        for s in (1, 2):
            if s in done:
                c = cond.condition(prev_conds, f"Stage{s}Complete", True, "JobSucceeded",
                                   f"stage {s} Job {names.stage_job(name, s)} succeeded", generation, now)
            elif s not in plan:
                why = ("AutoAdvanceOff", "spec.autoAdvance is false: stage 2 does not run") if s == 2 else (
                    "StartedAtStage2", "the training started at stage 2 (spec.stage: 2)")
                c = cond.condition(prev_conds, f"Stage{s}Complete", False, why[0], why[1], generation, now)
            else:
                r = phase if s == current else "NotStarted"
                text = f"stage {s} is {r.lower()}" if s == current else f"stage {s} has not started"
                c = cond.condition(prev_conds, f"Stage{s}Complete", False, r, text, generation, now)
            out.append(c)
        out.append(cond.condition(prev_conds, "Succeeded", phase == "Succeeded",
                                  reason_done if phase == "Succeeded" else phase,
                                  message if phase == "Succeeded" else f"phase is {phase}", generation, now))
        out.append(cond.condition(prev_conds, "Failed", phase == "Failed",
                                  failed_reason if phase == "Failed" else "NoFailure",
                                  message if phase == "Failed" else "no Job failed", generation, now))
        out.append(cond.condition(prev_conds, "Suspended", phase == "Suspended",
                                  "SuspendRequested" if phase == "Suspended" else "NotSuspended",
                                  message if phase == "Suspended" else "spec.suspend is false",
                                  generation, now))
        # kstatus: Reconciling while a stage moves on, Stalled when only the user can unblock it (module health).
        blocked = health.Blocked(problem.reason, problem.message) if problem is not None else (
            health.Blocked(failed_reason, message) if phase == "Failed" else None)
        out += health.conditions(prev_conds, phase, moving, blocked, generation, now)
        # Conditions set from the trainer's log between transitions (LossDiverged) are kept as they are.
        ours = {c["type"] for c in out}
        return out + [dict(c) for c in prev_conds if c.get("type") not in ours]

    if settings is None:
        # The spec cannot be parsed (the schema was bypassed): touch nothing, say which field is wrong.
        assert problem is not None
        phase = status.get("phase") or "Pending"
        message = problem.message
        plan = tuple(sorted(jobs)) or (1,)
        new = {**status, "phase": phase, "message": message, "observedGeneration": generation,
               "conditions": conditions(phase, "Stage2Complete", "JobFailed", plan, status.get("stage") or 1)}
        event = None
        if not cond.find(prev_conds, "Ready") or cond.is_true(prev_conds, "Ready") or status.get(
                "message") != message:
            event = Event("Warning", problem.reason, message)
        return Decision(status=new, event=event)

    plan = _plan(settings, done, jobs)
    done |= {s for s in plan if any(t in jobs for t in plan if t > s)}
    targets = {1: settings.number_of_steps, 2: settings.stage2_number_of_steps}
    actions: list[Action] = []
    moving: health.Activity | None = None
    current = plan[-1]
    phase = "Succeeded"
    failed_reason = "JobFailed"
    if plan == (1,):
        reason_done = "StoppedAfterStage1"
        message = ("stage 1 succeeded; spec.autoAdvance is false, so stage 2 was not started "
                   "(set spec.autoAdvance: true to run it)")
    else:
        reason_done = "Stage2Complete"
        message = f"stage 2 succeeded: the model reached global step {targets[2]}"
    for s in plan:
        if s in done:
            continue
        current = s
        job = jobs.get(s)
        if job is None:
            if problem is not None:
                phase, message = "Pending", f"stage {s} waits: {problem.message}"
            elif settings.suspend:
                phase, message = "Suspended", f"stage {s} not started: spec.suspend is true"
            else:
                actions.append(CreateJob(s))
                phase = "Running"
                message = f"stage {s}: Job {names.stage_job(name, s)} trains to global step {targets[s]}"
                moving = health.activity(s, message, created=True, advancing=s == 2 and 1 in done, resuming=False,
                                         ready=0, failed_pods=0)
        elif job.failed:
            phase, failed_reason, message = "Failed", *_failure(s, job, status)
        else:
            if settings.suspend != job.suspended:
                actions.append(SetJobSuspend(s, settings.suspend))
            target = job.target or targets[s]
            if settings.suspend:
                phase, message = "Suspended", f"stage {s} Job {job.name} suspended (spec.suspend is true)"
            elif problem is not None:  # the Job exists but its pod cannot start (e.g. its Secret is missing)
                phase, message = "Pending", f"stage {s} waits: {problem.message}"
            else:
                phase, message = "Running", f"stage {s}: Job {job.name} trains to global step {target}"
                moving = health.activity(s, message, created=False, advancing=False, resuming=job.suspended,
                                         ready=job.ready, failed_pods=job.failed_pods)
        break

    job = jobs.get(current)
    target = (job.target if job and job.target else None) or targets[current]
    step = status.get("step") if isinstance(status.get("step"), int) else None
    # A stage's Job succeeds only once the trainer reached that stage's target, whatever the last log read said.
    reached = [job.target or targets[s] for s in done if (job := jobs.get(s)) is not None]
    if reached:
        step = max(step or 0, *reached)
    same_stage = status.get("stage") == current
    new: dict[str, Any] = {
        "phase": phase,
        "stage": current,
        "jobName": names.stage_job(name, current),
        "target": target,
        "step": step,
        "progress": 100.0 if phase == "Succeeded" else (percent(step, target) if step is not None else None),
        "eta": status.get("eta") if phase == "Running" and same_stage else None,
        "message": message,
        "observedGeneration": generation,
        "stages": _stage_entries(status.get("stages") or [], jobs, name, targets,
                                 {a.stage for a in actions if isinstance(a, CreateJob)}),
        "conditions": conditions(phase, reason_done, failed_reason, plan, current, moving),
    }
    return Decision(status=new, actions=tuple(actions), event=_event(status, new, actions, problem))


def _event(old: Mapping[str, Any], new: Mapping[str, Any], actions: list[Action],
           problem: Problem | None) -> Event | None:
    """One Event per transition (so a transition costs at most: Job write + status patch + Event)."""
    phase, message = new["phase"], new["message"]
    for a in actions:
        if isinstance(a, CreateJob):
            return Event("Normal", f"Stage{a.stage}Started", message)
        if isinstance(a, SetJobSuspend):
            return Event("Normal", "Suspended" if a.suspend else "Resumed", message)
    if (old.get("phase"), old.get("stage")) != (phase, new["stage"]):
        if phase == "Succeeded":
            return Event("Normal", cond.find(new["conditions"], "Succeeded")["reason"], message)  # type: ignore[index]
        if phase == "Failed":
            return Event("Warning", "Failed", message)
        if phase == "Suspended":
            return Event("Normal", "Suspended", message)
        if phase == "Pending" and problem is not None:
            return Event("Warning", problem.reason, problem.message)
        if phase == "Running" and old.get("phase") == "Suspended":
            return Event("Normal", "Resumed", message)
    was_ready = cond.is_true(old.get("conditions"), "Ready")
    if problem is not None and (was_ready or old.get("message") != message):
        return Event("Warning", problem.reason, problem.message)
    if problem is None and cond.find(old.get("conditions"), "Ready") is not None and not was_ready and \
            cond.is_true(new["conditions"], "Ready"):
        return Event("Normal", "SpecValid", "the spec problem is fixed")
    return None


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch for ``status`` with only what changed (None removes a key)."""
    old = old or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if value is None:
            if old.get(key) is not None:
                patch[key] = None
        elif old.get(key) != value:
            patch[key] = value
    return patch
