"""A stage's pod that cannot start its containers, read from the pod's own status, named as a spec problem.

The operator reads no Secrets (its ClusterRole has no rule on them). A missing credentials Secret, or one without
a key, shows where the kubelet reports it: the container waits with reason ``CreateContainerConfigError`` and a
message that names the Secret and the key. An image the node cannot pull (every container runs ``spec.image``)
waits with ``ErrImagePull``, ``ImagePullBackOff``, ``InvalidImageName`` or ``ErrImageNeverPull``. Pods are listed
anyway for the step, so this costs no request. A pod no node fits shows the scheduler's words (condition
PodScheduled=False, Unschedulable); a stage whose pods the Job controller cannot create (a quota, an admission
policy) has no pod at all, and its Job's FailedCreate Events say why.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

from im2txt_operator.decisions import Problem

CONFIG_ERROR = "CreateContainerConfigError"
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# Every reason pod_problem returns: a status that holds one of them was learned from a pod, so a restarted operator
# reads the pod again before it writes status (it would otherwise say the problem is fixed without looking).
REASONS = frozenset({"SecretNotFound", "SecretKeyMissing", "ContainerConfigError", "ImagePullFailed", "Unschedulable",
                     "PodCreateFailed"})
MAX_KUBELET_MESSAGE = 300
# The Job controller makes a Job's pods within a second; a Job younger than this with no pod is not asked why (an
# Events list with a field selector is one of the API server's dearest reads: 0.4 s each at 1,000 trainings).
CREATE_GRACE_SECONDS = 10.0
EXPECTED_KEYS = "publicKey and privateKey"
# The kubelet's words (pkg/kubelet/kubelet_pods.go), stable for years.
_SECRET_NOT_FOUND = re.compile(r'secret "(?P<name>[^"]+)" not found')
_KEY_MISSING = re.compile(r"couldn't find key (?P<key>\S+) in Secret (?P<namespace>[^/\s]+)/(?P<name>\S+)")


def _waiting(pod: Mapping[str, Any]) -> Iterable[tuple[str, str, str, str]]:
    """(container, image, reason, message) of every waiting container, init containers first (they start first)."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in status.get(key) or ():
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                yield c.get("name", ""), c.get("image", ""), waiting["reason"], waiting.get("message") or ""


# Words of the scheduler's message -> the training field that asked for what no node has.
_SCHEDULER_FIELDS = (("nvidia.com/gpu", "spec.gpus"), ("Insufficient cpu", "spec.resources"),
                     ("Insufficient memory", "spec.resources"), ("node affinity/selector", "spec.nodeSelector"),
                     ("untolerated taint", "spec.tolerations"))


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it found no node for the pod (condition PodScheduled=False, Unschedulable)."""
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return str(c.get("message") or "no node fits it")
    return None


def pods_overdue(job: Mapping[str, Any], now: str) -> bool:
    """Whether a Job that has no pod has been there long enough to have one at ``now`` (RFC 3339, as the API's
    timestamps); a time that does not parse says it has. A Job the Job controller has not synced yet (no
    status.startTime: it sets it on its first sync, before it creates pods) cannot have failed to create one:
    a busy controller (its client's default limit is 20 requests a second) may take longer than the grace."""
    if not (job.get("status") or {}).get("startTime"):
        return False
    try:
        created, at = (datetime.datetime.fromisoformat(str(t).replace("Z", "+00:00"))
                       for t in ((job.get("metadata") or {}).get("creationTimestamp"), now))
        return (at - created).total_seconds() >= CREATE_GRACE_SECONDS
    except (TypeError, ValueError):
        return True


def create_problem(events: Iterable[Mapping[str, Any]], job_name: str) -> Problem | None:
    """The Job controller's own words when it cannot create the stage's pods (its FailedCreate Events: a quota,
    an admission policy or a LimitRange refused them), from the newest such Event; None without one."""
    newest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", default=None)
    if newest is None:
        return None
    said = str(newest.get("message") or "")[:MAX_KUBELET_MESSAGE]
    return Problem("spec", "PodCreateFailed", f"spec: the Job controller cannot create the pods of Job {job_name}: "
                                              f"{said}")


def _newest_live(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    live = [p for p in pods if (p.get("status") or {}).get("phase") in (None, "Pending", "Running")
            and not (p.get("metadata") or {}).get("deletionTimestamp")]
    return max(live, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", default=None)


def pod_problem(pods: Iterable[Mapping[str, Any]], secret: str | None, namespace: str) -> Problem | None:
    """The problem that keeps the newest live pod of a stage from starting, or None."""
    pod = _newest_live(pods)
    if pod is None:
        return None
    pod_name = (pod.get("metadata") or {}).get("name", "")
    if (scheduler := _unschedulable(pod)) is not None:
        field = next((f for words, f in _SCHEDULER_FIELDS if words in scheduler), "spec")
        return Problem(field, "Unschedulable", f"{field}: no node can run pod {pod_name}; the scheduler says: "
                                               f"{scheduler[:MAX_KUBELET_MESSAGE]}")
    for container, image, reason, message in _waiting(pod):
        where = f"(pod {pod_name}, container {container}: {reason})"
        if reason in PULL_ERRORS:
            said = f": {message[:MAX_KUBELET_MESSAGE]}" if message else ""
            return Problem("spec.image", "ImagePullFailed",
                           f"spec.image: the node cannot pull image {image!r}{said}; expected an image the "
                           f"cluster's nodes can pull (check the name, tag and registry access) {where}")
        if reason != CONFIG_ERROR:
            continue
        if (m := _SECRET_NOT_FOUND.search(message)) and m["name"] == secret:
            return Problem("spec.credentialsSecret", "SecretNotFound",
                           f"spec.credentialsSecret: Secret {secret!r} not found in namespace {namespace!r}; "
                           f"expected a Secret with keys {EXPECTED_KEYS} {where}")
        if (m := _KEY_MISSING.search(message)) and m["name"] == secret:
            return Problem("spec.credentialsSecret", "SecretKeyMissing",
                           f"spec.credentialsSecret: Secret {secret!r} lacks key {m['key']}; expected keys "
                           f"{EXPECTED_KEYS} {where}")
        return Problem("spec", "ContainerConfigError", f"spec: pod {pod_name} cannot start container {container}: "
                       f"{message}")
    return None
