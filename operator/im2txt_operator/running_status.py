"""Pure: what one look at a running stage's pods changes in its status, and the Event to post about it.

The poller's only status logic: step, progress and ETA from the trainer's last log line, uploadedStep and
uploadError from the sync sidecar, status.loss and LossDiverged (loss.py). The poller feeds it and writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator.decisions import Event, status_patch
from im2txt_operator.loss import loss_patch
from im2txt_operator.pod_reads import PodReads, observed_fields
from im2txt_operator.progress import eta, percent

Sample = tuple[int, float]  # (step, monotonic time it was first seen): the rate when the log gives no sec/step


@dataclass(frozen=True)
class RunningUpdate:
    patch: dict[str, Any]  # a merge patch of status: only what changed
    event: Event | None = None
    sample: Sample | None = None  # to keep for the next look


def running_status(status: Mapping[str, Any], job_name: str, reads: PodReads, previous: Sample | None,
                   clock: float, generation: int | None, now: str) -> RunningUpdate:
    """The patch and Event for ``reads`` of Job ``job_name``'s pods, taken at ``clock`` (monotonic seconds; ``now``:
    the wall time conditions carry). Nothing changes unless the status still shows that Job running."""
    sample, kept = reads.sample, previous
    new = observed_fields(reads, final=False)
    target = status.get("target")
    if sample is not None and isinstance(target, int):
        found = {"step": sample.step, "progress": percent(sample.step, target),
                 "eta": eta(sample.step, target, sample.sec_per_step, previous, clock)}
        new |= {k: v for k, v in found.items() if v is not None}
        if previous is None or previous[0] != sample.step:
            kept = (sample.step, clock)
    if status.get("phase") != "Running" or status.get("jobName") != job_name:
        return RunningUpdate({}, None, kept)
    patch = status_patch(status, new)
    if sample is None:
        return RunningUpdate(patch, None, kept)
    loss = loss_patch(status, sample, generation, now)
    return RunningUpdate(patch | loss.patch, loss.event, kept)
