"""The stage state machine, pure: (settings, status, observed Jobs) -> new status + actions + event.

Decisions come from what is observed (the Jobs), plus the one thing Jobs cannot show once deleted:
the ``StageNComplete`` conditions already in status. So a restarted operator decides the same thing as the
one that stopped, whatever moment it stopped at:
- a stage whose Job succeeded, or whose StageNComplete is True, is done and never runs again;
- a stage is never skipped: the next stage's Job is only created after the previous stage is done;
- if a later stage's Job exists, earlier stages count as done (someone deleted an old Job);
- the operator never writes a Job's spec.suspend: a queued Job is created suspended and Kueue alone admits it
  (phase Queued, with the Workload's reason), and a suspended training's stage Job is deleted, then created again
  on resume (the trainer continues from its last checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator import health, names
from im2txt_operator.decisions import Action, CreateJob, Decision, DeleteJob, Event, Problem
from im2txt_operator.job_state import JobState
from im2txt_operator.pod_reports import OUTPUT_CHECK
from im2txt_operator.progress import percent
from im2txt_operator.spec import Settings
from im2txt_operator.stage_conditions import Outcome, stage_conditions
from im2txt_operator.workloads import WAITING, Hold, held_message


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

    if settings is None:
        # The spec cannot be parsed (the schema was bypassed): touch nothing, say which field is wrong.
        assert problem is not None
        phase = status.get("phase") or "Pending"
        message = problem.message
        plan = tuple(sorted(jobs)) or (1,)
        new = {**status, "phase": phase, "message": message, "observedGeneration": generation,
               "conditions": stage_conditions(name, prev_conds, problem, Outcome(
                   phase, message, "Stage2Complete", "JobFailed", plan, status.get("stage") or 1, frozenset(done)),
                   generation, now)}
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
    hold: Hold | None = None
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
            elif settings.queue_name:  # created suspended: Kueue admits it
                actions.append(CreateJob(s))
                hold = Hold(settings.queue_name, WAITING, "")
                phase, message = "Queued", held_message(s, names.stage_job(name, s), hold)
                moving = health.Activity(health.QUEUED, message)
            else:
                actions.append(CreateJob(s))
                phase = "Running"
                message = f"stage {s}: Job {names.stage_job(name, s)} trains to global step {targets[s]}"
                # The stage had a Job before the suspend (status.stages lists it): it resumes.
                resuming = status.get("phase") == "Suspended" and any(
                    e.get("stage") == s for e in status.get("stages") or ())
                moving = health.activity(s, message, advancing=s == 2 and 1 in done, resuming=resuming, ready=0,
                                         failed_pods=0)
        elif job.failed:
            phase, failed_reason, message = "Failed", *_failure(s, job, status)
        elif settings.suspend or job.deleting:
            if settings.suspend and not job.deleting:
                actions.append(DeleteJob(s, job.uid))  # its Workload goes with it: the quota is released
            phase, message = "Suspended", (
                f"stage {s} suspended (spec.suspend is true): Job {job.name} is deleted; resuming creates it again "
                f"and training continues from the last checkpoint" if settings.suspend else
                f"stage {s} resumes once Job {job.name}, deleted while suspended, is gone")
        elif job.suspended:  # Kueue holds it (waiting, or evicted): only Kueue unsuspends it
            hold = job.held
            phase, message = "Queued", held_message(s, job.name, hold)
            moving = health.Activity(health.QUEUED, message)  # on its way: kstatus InProgress, not Current
        elif problem is not None:  # the Job exists but its pod cannot start (e.g. its Secret is missing)
            phase, message = "Pending", f"stage {s} waits: {problem.message}"
        else:
            target = job.target or targets[s]
            phase, message = "Running", f"stage {s}: Job {job.name} trains to global step {target}"
            moving = health.activity(s, message, advancing=s == 2 and 1 in done, resuming=False, ready=job.ready,
                                     failed_pods=job.failed_pods)
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
        "conditions": stage_conditions(name, prev_conds, problem, Outcome(
            phase, message, reason_done, failed_reason, plan, current, frozenset(done), moving,
            (hold.reason if hold else WAITING) if phase == "Queued" else None), generation, now),
    }
    return Decision(status=new, actions=tuple(actions), event=_event(status, new, actions, problem, hold))


def _event(old: Mapping[str, Any], new: Mapping[str, Any], actions: list[Action],
           problem: Problem | None, hold: Hold | None) -> Event | None:
    """One Event per transition (so a transition costs at most: Job write + status patch + Event)."""
    phase, message = new["phase"], new["message"]
    for a in actions:
        if isinstance(a, CreateJob):
            # A stage that had a Job before the suspend (status.stages lists it) resumes; one that had none starts.
            had_job = any(e.get("stage") == a.stage for e in old.get("stages") or ())
            resumed = old.get("phase") == "Suspended" and had_job
            return Event("Normal", "Resumed" if resumed else f"Stage{a.stage}Started", message)
        if isinstance(a, DeleteJob):
            return Event("Normal", "Suspended", message)
    queued = cond.find(new["conditions"], "Queued")
    if phase == "Queued" and queued is not None and queued["reason"] != WAITING and \
            queued["reason"] != (cond.find(old.get("conditions"), "Queued") or {}).get("reason"):
        # Once per reason Kueue gives (not per message: "2 more needed" after "1 more needed" is the same wait).
        evicted = hold is not None and hold.evicted
        return Event("Warning" if evicted else "Normal", "Evicted" if evicted else "Queued", message)
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
        if phase == "Running" and old.get("phase") == "Queued":
            return Event("Normal", "Admitted", f"{message} (admitted by Kueue)")
        if phase == "Running" and old.get("stage") != new["stage"]:
            # Its Job exists already: made by a leader that stopped before it wrote status, and its Event with it.
            return Event("Normal", f"Stage{new['stage']}Started", message)
    was_ready = cond.is_true(old.get("conditions"), "Ready")
    if problem is not None and (was_ready or old.get("message") != message):
        return Event("Warning", problem.reason, problem.message)
    if problem is None and cond.find(old.get("conditions"), "Ready") is not None and not was_ready and \
            cond.is_true(new["conditions"], "Ready"):
        return Event("Normal", "SpecValid", "the spec problem is fixed")
    return None


