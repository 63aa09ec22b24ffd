"""What the operator reads from a stage's (or the export's) batch/v1 Job: a plain JobState for the pure core."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator.pod_reports import ContainerFailure
from im2txt_operator.workloads import Hold

# Facts stamped on a stage's Job when it is made (jobs.stamps): read back, never parsed from its args.
ANNOTATION_TARGET = "im2txt.dev/target-step"
ANNOTATION_IMAGE_SIZE = "im2txt.dev/image-size"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"  # Kueue queues a Job with this label (spec.queueName)


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
    uid: str = ""
    deleting: bool = False  # deleted (the training was suspended), its pods not gone yet
    queue: str | None = None  # its Kueue LocalQueue label
    held: Hold | None = None  # of a suspended Job: why Kueue holds it (its Workload, read by the controller)


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
                    target=_stamp(stamped, ANNOTATION_TARGET), image_size=_stamp(stamped, ANNOTATION_IMAGE_SIZE),
                    uid=meta.get("uid", ""), deleting=bool(meta.get("deletionTimestamp")),
                    queue=(meta.get("labels") or {}).get(LABEL_QUEUE))


def facts(job: Mapping[str, Any]) -> tuple[JobState, tuple[tuple[str, str], ...]]:
    """All that a reconcile reads of a Job: its JobState and its owners. A watch event that changes neither (the Job
    controller's pod counts in flight, a managedFields entry, a label of someone else's) needs no reconcile."""
    owners = tuple((str(ref.get("kind")), str(ref.get("uid")))
                   for ref in (job.get("metadata") or {}).get("ownerReferences") or ())
    return job_state(job, None), owners


def _stamp(annotations: Mapping[str, Any], key: str) -> int | None:
    """An integer fact stamped on a Job when it was made (jobs.stamps); None when absent."""
    value = str(annotations.get(key) or "")
    return int(value) if value.isdigit() else None
