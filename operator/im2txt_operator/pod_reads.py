"""The reads of a stage's pods that feed status: one pod list, then the trainer's and the sync sidecar's log tails.

Used by the poller while a stage runs and once more by reconcile when a stage ends, so the final status shows the
step, loss and uploaded checkpoint the stage ended with, and a failed stage says why its last pod failed. A stage
that ended well needs no log: its containers' termination messages (in the pod list) say the same.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from im2txt_operator.api_budget import ANY
from im2txt_operator.api_errors import ApiException
from im2txt_operator.kube import Kube
from im2txt_operator.pod_reports import SYNC, ContainerFailure, published_step, stage_failure, upload_failure
from im2txt_operator.progress import StepSample, last_step, progress_pod

log = logging.getLogger("im2txt_operator")

TRAINER_TAIL_LINES = 20
SYNC_TAIL_LINES = 50  # retry warnings come between two "published checkpoint" lines


@dataclass(frozen=True)
class PodReads:
    """What one look at a stage's pods found."""

    pods: Sequence[Mapping[str, Any]]
    sample: StepSample | None = None  # the trainer's last "global step N" line
    uploaded_step: int | None = None  # the checkpoint the sync sidecar last published
    failure: ContainerFailure | None = None  # why the newest failed pod failed
    upload_failure: ContainerFailure | None = None  # the sync sidecar's failed final upload


async def tail(kube: Kube, namespace: str, pod: str, container: str, lines: int) -> str:
    """A container's log tail; empty when there is none to read (not started, pod gone, no node to ask)."""
    try:
        return await kube.read_log(namespace, pod, container, lines)
    except ApiException as e:
        if e.status in (400, 404):
            return ""
        raise


async def _nothing() -> str:
    return ""


def _ended_well(pod: Mapping[str, Any], container: str, statuses: str, opening: str) -> str:
    """The termination message of a container of the pod that ended with one starting with ``opening``: the
    trainer's `trainer: reached global step N: loss = L (S sec/step)`, the sync sidecar's `sync: published
    checkpoint model.ckpt-N`. Empty otherwise (it runs; a failure; an older image that wrote none)."""
    for status in (pod.get("status") or {}).get(statuses) or ():
        if status.get("name") == container:
            message = str((((status.get("state") or {}).get("terminated") or {}).get("message")) or "")
            return message if message.startswith(opening) else ""
    return ""


async def read_pods(kube: Kube, namespace: str, job_name: str, *, syncs: bool,
                    pods: Sequence[Mapping[str, Any]] | None = None, not_older_than: str | None = ANY) -> PodReads:
    """List the Job's pods (unless given; from the API server's cache, at least as fresh as ``not_older_than``)
    and read the progress pod's trainer log, and its sync log when the output is uploaded (``syncs``)."""
    if pods is None:
        pods = await kube.list_pods(namespace, job_name, not_older_than)
    pod = progress_pod(list(pods))  # type: ignore[arg-type]
    sample = uploaded = None
    if pod is not None:
        name = pod["metadata"]["name"]
        # A stage that ended well says how in its containers' termination messages: the pod list tells it all,
        # and the logs are read only while it runs (or when a message is missing).
        trainer = _ended_well(pod, "trainer", "containerStatuses", "trainer: reached global step")
        sync = _ended_well(pod, SYNC, "initContainerStatuses", "sync: published checkpoint") if syncs else ""
        read_trainer, read_sync = await asyncio.gather(  # the two tails together: one round trip of waiting
            _nothing() if trainer else tail(kube, namespace, name, "trainer", TRAINER_TAIL_LINES),
            tail(kube, namespace, name, SYNC, SYNC_TAIL_LINES) if syncs and not sync else _nothing())
        trainer, sync = trainer or read_trainer, sync or read_sync
        sample, uploaded = last_step(trainer), published_step(sync) if syncs else None
    return PodReads(pods, sample, uploaded, stage_failure(pods), upload_failure(pods))


def observed_fields(reads: PodReads, *, final: bool) -> dict[str, Any]:
    """The status fields the pods tell: uploadedStep, uploadError (the sync sidecar's failed final upload; None
    clears it) and, when the stage has ended (``final``), the trainer's last step and finite loss (while it runs
    the poller follows them, divergence included: loss.py)."""
    out: dict[str, Any] = {}
    sample = reads.sample
    if final and sample is not None:
        out["step"] = sample.step
        if sample.loss is not None and math.isfinite(sample.loss):
            out["loss"] = float(f"{sample.loss:.4g}")
    if reads.uploaded_step is not None:
        out["uploadedStep"] = reads.uploaded_step
    out["uploadError"] = reads.upload_failure.text() if reads.upload_failure else None
    return out
