"""Why Kueue holds a stage's Job, from its Workload (pure): the queue, Kueue's own reason and message, and whether
the stage was evicted (it had run; it resumes from its last checkpoint when admitted again).

Kueue (kueue.x-k8s.io/v1beta2) makes one Workload per Job it manages, labelled with the Job's uid. A Workload that
waits has ``QuotaReserved=False`` (reason ``Pending``: "couldn't assign flavors to pod set main: insufficient
unused quota for nvidia.com/gpu in flavor ..., 1 more needed"); an evicted one has ``Evicted=True`` (reason
``Deactivated``, ``Preempted``, ``PodsReadyTimeout`` ...) until it reserves quota again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import conditions as cond

JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"


@dataclass(frozen=True)
class Hold:
    """Why a suspended stage Job waits: what status says while the stage is Queued."""

    queue: str  # the LocalQueue, "" when no Workload names one
    reason: str  # Kueue's condition reason (CamelCase); WaitingForAdmission while no Workload says more
    message: str  # Kueue's message, "" when none
    evicted: bool = False


WAITING = "WaitingForAdmission"


def hold_of(workloads: Iterable[Mapping[str, Any]], queue: str | None) -> Hold:
    """The hold of a Job from its Workloads (none yet: Kueue makes it a moment after the Job); ``queue``: the Job's
    queue label, for when no Workload names one."""
    for workload in workloads:
        conditions = (workload.get("status") or {}).get("conditions")
        named = str((workload.get("spec") or {}).get("queueName") or queue or "")
        evicted = cond.find(conditions, "Evicted")
        if evicted is not None and evicted.get("status") == "True":
            return Hold(named, str(evicted.get("reason") or "Evicted"), str(evicted.get("message") or ""), True)
        for type_ in ("QuotaReserved", "Admitted"):
            waiting = cond.find(conditions, type_)
            if waiting is not None and waiting.get("status") == "False":
                return Hold(named, str(waiting.get("reason") or WAITING), str(waiting.get("message") or ""))
        return Hold(named, WAITING, "")
    return Hold(queue or "", WAITING, "")


def held_message(stage: int, job: str, hold: Hold | None) -> str:
    """status.message of a stage whose Job is suspended by someone other than the operator (Kueue, as a rule)."""
    if hold is None or (not hold.queue and hold.reason == WAITING and not hold.message):
        return f"stage {stage}: Job {job} is suspended by another controller; it runs when that one resumes it"
    if hold.evicted:
        return (f"stage {stage} was evicted by Kueue ({hold.reason}: {hold.message}); it resumes from its last "
                f"checkpoint when admitted again")
    where = f"Kueue admission in LocalQueue {hold.queue}" if hold.queue else "Kueue admission"
    return f"stage {stage} waits for {where}" + (f": {hold.message}" if hold.message else "")
