"""The ``Reconciling`` and ``Stalled`` conditions, pure: how GitOps tools tell a training's health.

kstatus (``sigs.k8s.io/cli-utils`` ``status.Compute``, which Flux and many other tools use) reads a custom
resource so: ``status.observedGeneration`` behind ``metadata.generation`` is InProgress; ``Reconciling=True`` is
InProgress; ``Stalled=True`` is Failed; then ``Ready=True`` is Current. So:

- while a stage is queued for Kueue, starting, training, retrying, or the next stage is being started,
  ``Reconciling`` is True (reason: what happens now) and the training reads InProgress;
- when a stage failed for good, or something only the user can fix blocks it (a missing Secret or claim, a Job
  the API server refused, a Job of that name owned by something else), ``Stalled`` is True with the reason and
  the message that names the field, and the training reads Failed;
- otherwise (Succeeded, Suspended) both are False and ``Ready`` decides: Current.

``Ready`` keeps its meaning (the spec is usable, nothing failed): it is False whenever ``Stalled`` is True.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import conditions as cond

# What a stage that moves on is doing, as the Reconciling reason.
STARTING = "Starting"  # its Job was just created, or its pods are not ready yet (queued, pulling, initialising)
TRAINING = "Training"  # a pod of the stage is ready
RETRYING = "Retrying"  # a pod failed; the Job runs another (resuming from the latest checkpoint)
ADVANCING = "Advancing"  # stage 1 succeeded: stage 2's Job was just created
RESUMING = "Resuming"  # spec.suspend went back to false: the Job is being resumed
QUEUED = "Queued"  # Kueue holds the stage's Job (waiting for quota, or evicted): it runs once admitted


@dataclass(frozen=True)
class Activity:
    """What a training that progresses is doing now (the Reconciling condition)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Blocked:
    """Why a training cannot progress without the user (the Stalled condition)."""

    reason: str
    message: str


def activity(stage: int, message: str, *, created: bool, advancing: bool, resuming: bool, ready: int,
             failed_pods: int) -> Activity:
    """The activity of a running stage: ``message`` is status.message, e.g. "stage 1: Job x trains to ..."."""
    if created:
        if advancing:
            return Activity(ADVANCING, f"{message} (stage {stage - 1} succeeded, its Job was just created)")
        return Activity(STARTING, f"{message} (its Job was just created)")
    if resuming:
        return Activity(RESUMING, f"{message} (resuming: spec.suspend is false)")
    if ready > 0:
        return Activity(TRAINING, message)
    if failed_pods > 0:
        pods = "pod" if failed_pods == 1 else "pods"
        return Activity(RETRYING, f"{message} (retrying after {failed_pods} failed {pods})")
    return Activity(STARTING, f"{message} (no pod is ready yet)")


def conditions(previous: Iterable[Mapping[str, Any]] | None, phase: str, moving: Activity | None,
               blocked: Blocked | None, generation: int | None, now: str) -> list[dict[str, Any]]:
    """``Reconciling`` and ``Stalled`` for a training in ``phase``; at most one of them is True."""
    if moving is not None and blocked is None:
        reconciling = cond.condition(previous, "Reconciling", True, moving.reason, moving.message, generation, now)
    else:
        reconciling = cond.condition(previous, "Reconciling", False, phase, f"phase is {phase}", generation, now)
    if blocked is not None:
        stalled = cond.condition(previous, "Stalled", True, blocked.reason, blocked.message, generation, now)
    else:
        stalled = cond.condition(previous, "Stalled", False, phase, f"phase is {phase}", generation, now)
    return [reconciling, stalled]
