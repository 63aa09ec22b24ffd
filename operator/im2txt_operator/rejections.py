"""When the API server refuses a Job or finds one in the way: which spec field to name, in the user's words.

The CRD schema and ``spec.parse_spec`` catch what they can; the Job API's own validation is the last word
(and may grow stricter in a later Kubernetes release). A refusal must then read as a spec problem of the
training, naming the training's field that produced the refused Job field, with the API server's own message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from im2txt_operator.decisions import Problem
from im2txt_operator.jobs import LABEL_QUEUE

_POD = "spec.template.spec."
_VOLUME_FIELDS = {"data": "spec.dataPath", "output": "spec.outputPath"}
_VOLUME = re.compile(r"^volumes\[(\d+)\]")
_MOUNT = re.compile(r"^(containers|initContainers)\[(\d+)\]\.volumeMounts\[(\d+)\]")


def _volume_name(pod_field: str, pod_spec: Mapping[str, Any]) -> str | None:
    """The name of the volume a pod-spec field path points into (volumes[i] or a container's volumeMounts[j])."""
    try:
        if m := _VOLUME.match(pod_field):
            return str(pod_spec["volumes"][int(m[1])]["name"])
        if m := _MOUNT.match(pod_field):
            return str(pod_spec[m[1]][int(m[2])]["volumeMounts"][int(m[3])]["name"])
    except (KeyError, IndexError, TypeError):
        return None
    return None


def spec_field(job_field: str, job: Mapping[str, Any] | None = None) -> str:
    """The training field behind a field path of its Job (``job`` is the refused manifest), e.g.
    ``spec.template.spec.nodeSelector`` -> ``spec.nodeSelector``; ``spec`` when no single field is to blame."""
    if job_field.startswith("metadata.labels") and LABEL_QUEUE in job_field:
        return "spec.queueName"
    if job_field.startswith(("metadata.name", "metadata.labels")):
        return "metadata.name"
    pod = job_field.removeprefix(_POD) if job_field.startswith(_POD) else None
    if pod is None:
        return {"spec.activeDeadlineSeconds": "spec.maxRunSeconds", "spec.backoffLimit": "spec.backoffLimit",
                "spec.suspend": "spec.suspend"}.get(job_field.split("[")[0], "spec")
    if pod.startswith("nodeSelector"):
        return "spec.nodeSelector"
    if m := re.match(r"tolerations(\[\d+\])?", pod):
        return f"spec.tolerations{m[1] or ''}"
    pod_spec = ((job or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    if (volume := _volume_name(pod, pod_spec)) is not None:
        return _VOLUME_FIELDS.get(volume, "spec")
    if ".image" in pod:
        return "spec.image"
    if ".resources" in pod:
        return "spec.gpus" if "nvidia.com/gpu" in pod else "spec.resources"
    if ".args" in pod:
        return "spec.extraArgs"
    if ".env" in pod:
        return "spec.credentialsSecret"
    return "spec"


def is_refusal(status: int, message: str) -> bool:
    """Whether an API error on creating a Job refuses the manifest itself, so asking again cannot help until the
    spec changes: validation (422 Invalid, 400 BadRequest), or an admission policy or webhook that denied it
    (403 "... denied the request" / "denied request"). Other 403s (RBAC: "cannot create resource", or an
    exhausted ResourceQuota) are the cluster's state, not the spec's, and are retried."""
    if status in (400, 422):
        return True
    return status == 403 and "denied" in message and "exceeded quota" not in message


def _causes(details: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return [c for c in (details or {}).get("causes") or () if isinstance(c, Mapping)]


def rejected(job: Mapping[str, Any], message: str, details: Mapping[str, Any] | None) -> Problem:
    """A Problem for a Job the API refused (see ``is_refusal``), naming the first field it blames; ``spec`` when
    it names none (an admission policy's denial: its message then says why)."""
    job_name = (job.get("metadata") or {}).get("name", "")
    fields = [spec_field(str(c.get("field") or ""), job) for c in _causes(details) if c.get("field")]
    field = next((f for f in fields if f != "spec"), fields[0] if fields else "spec")
    return Problem(field, "JobRejected", f"{field}: the API server refused Job {job_name}: {message}")


def _owner_text(refs: Iterable[Mapping[str, Any]]) -> str:
    controller = next((r for r in refs if r.get("controller")), None)
    if controller is None:
        return "it has no controller"
    return f"it is controlled by {controller.get('kind')} {controller.get('name')!r} (uid {controller.get('uid')})"


def not_owned(obj: Mapping[str, Any], training: str, namespace: str) -> Problem:
    """An object with one of this training's child names that another object (or nobody) controls: never driven,
    patched, adopted or deleted. Reason ``<Kind>NotOwned`` (JobNotOwned, ServiceNotOwned, ...)."""
    meta = obj.get("metadata") or {}
    kind, name = obj.get("kind") or "Job", meta.get("name", "")
    return Problem("metadata.name", f"{kind}NotOwned",
                   f"metadata.name: {kind} {name} in namespace {namespace} already exists and is not owned by "
                   f"training {training} ({_owner_text(meta.get('ownerReferences') or ())}); delete that {kind} "
                   f"or give the training another name")


def write_failed(child: Mapping[str, Any], field: str, error: Any) -> Problem:
    """A child write the API server failed (``error``: an ApiException) for a reason that may pass (a 500, RBAC,
    a quota, an admission webhook down): reason ``<Kind><the server's reason>``, e.g. ServiceForbidden; retried."""
    kind, name = child.get("kind") or "Object", (child.get("metadata") or {}).get("name", "")
    server_reason = re.sub(r"[^A-Za-z0-9]", "", str(error.reason)) or "Error"
    return Problem(field, f"{kind}{server_reason}",
                   f"{field}: the API server did not take {kind} {name} (HTTP {error.status} {error.reason}: "
                   f"{str(error.message)[:500]}); retrying")
