"""workloads.hold_of: why Kueue holds a Job, from its Workload's conditions as Kueue v0.17 writes them."""

from __future__ import annotations

from typing import Any

import pytest

from im2txt_operator.workloads import WAITING, Hold, held_message, hold_of

INSUFFICIENT = ("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
                "default-flavor, 1 more needed")


def workload(*conditions: tuple[str, str, str, str], queue: str = "gpu-queue") -> dict[str, Any]:
    listed = [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]
    return {"spec": {"queueName": queue, "active": True}, "status": {"conditions": listed}}


@pytest.mark.parametrize(("workloads", "expected"), [
    ([], Hold("gpu-queue", WAITING, "")),  # Kueue makes the Workload a moment after the Job
    ([workload()], Hold("gpu-queue", WAITING, "")),
    ([workload(("QuotaReserved", "False", "Pending", INSUFFICIENT))], Hold("gpu-queue", "Pending", INSUFFICIENT)),
    # Quota reserved, admission checks not done yet.
    ([workload(("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue cq"),
               ("Admitted", "False", "NoChecks", "waiting for checks"))], Hold("gpu-queue", "NoChecks",
                                                                               "waiting for checks")),
    # Deactivated: evicted, and stays so (Requeued or not) until it reserves quota again.
    ([workload(("QuotaReserved", "False", "Pending", "The workload is deactivated"),
               ("Evicted", "True", "Deactivated", "The workload is deactivated"),
               ("Requeued", "False", "Deactivated", "The workload is deactivated"))],
     Hold("gpu-queue", "Deactivated", "The workload is deactivated", evicted=True)),
    ([workload(("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: u)"), queue="other")],
     Hold("other", "Preempted", "Preempted to accommodate a workload (UID: u)", evicted=True)),
])
def test_hold_of(workloads: list[dict[str, Any]], expected: Hold) -> None:
    assert hold_of(workloads, "gpu-queue") == expected


def test_held_message() -> None:
    assert held_message(1, "t-stage1", Hold("gpu-queue", "Pending", INSUFFICIENT)) == (
        f"stage 1 waits for Kueue admission in LocalQueue gpu-queue: {INSUFFICIENT}")
    assert held_message(2, "t-stage2", Hold("", WAITING, "")) == (
        "stage 2: Job t-stage2 is suspended by another controller; it runs when that one resumes it")
    assert held_message(2, "t-stage2", None) == held_message(2, "t-stage2", Hold("", WAITING, ""))
    assert held_message(1, "t-stage1", Hold("q", "Preempted", "by a higher priority", evicted=True)) == (
        "stage 1 was evicted by Kueue (Preempted: by a higher priority); it resumes from its last checkpoint when "
        "admitted again")
