"""The conditions of a training's status, from the phase lifecycle.decide reached (pure).

Ready's message is ``kubectl get -o wide``'s Message column: the problem, the failure, or what runs now. Each stage
has a StageNComplete condition; Succeeded, Failed and Suspended mirror the phase, and so does Queued (with Kueue's
reason) once a stage waited for Kueue; Reconciling and Stalled follow the
kstatus conventions (module health). Conditions set from the trainer's log between transitions (LossDiverged) are
kept as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator import health, names
from im2txt_operator.decisions import Problem


@dataclass(frozen=True)
class Outcome:
    """Where a training stands after a decision: what the conditions are written from."""

    phase: str
    message: str
    reason_done: str  # the Succeeded condition's reason once the phase is Succeeded
    failed_reason: str
    plan: tuple[int, ...]  # the stages this training runs
    current: int
    done: frozenset[int]
    moving: health.Activity | None = None
    queued: str | None = None  # phase Queued: the reason Kueue holds the stage's Job (workloads.Hold)


def stage_conditions(name: str, prev_conds: list[Mapping[str, Any]], problem: Problem | None, outcome: Outcome,
                     generation: int | None, now: str) -> list[dict[str, Any]]:
    phase, message, failed_reason = outcome.phase, outcome.message, outcome.failed_reason
    plan, current, done, reason_done, moving = (outcome.plan, outcome.current, outcome.done, outcome.reason_done,
                                                outcome.moving)
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
    if outcome.queued is not None:
        out.append(cond.condition(prev_conds, "Queued", True, outcome.queued, message, generation, now))
    elif cond.find(prev_conds, "Queued") is not None:  # only trainings that have waited for Kueue carry it
        out.append(cond.condition(prev_conds, "Queued", False, "Admitted" if phase == "Running" else phase,
                                  f"phase is {phase}", generation, now))
    # kstatus: Reconciling while a stage moves on, Stalled when only the user can unblock it (module health).
    blocked = health.Blocked(problem.reason, problem.message) if problem is not None else (
        health.Blocked(failed_reason, message) if phase == "Failed" else None)
    out += health.conditions(prev_conds, phase, moving, blocked, generation, now)
    # Conditions set from the trainer's log between transitions (LossDiverged) are kept as they are.
    ours = {c["type"] for c in out}
    return out + [dict(c) for c in prev_conds if c.get("type") not in ours]

