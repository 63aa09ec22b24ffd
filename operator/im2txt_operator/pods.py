"""One builder for every pod the operator makes (stage Jobs, the export Job, TensorBoard): identity, security, storage.

Pure. It sets what all of them share: the owner reference and labels (the role among them), the restricted Pod
Security Standard (pod and container parts), FallbackToLogsOnError termination messages, no ServiceAccount token,
the training's nodeSelector and tolerations, the output check of a pvc:// output, and the storage containers
(``fetch``, the ``sync`` sidecar, ``mirror``) with the UFile keys only through secretKeyRef.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from im2txt_operator.paths import PvcPath, StoragePath
from im2txt_operator.spec import GROUP, KIND, VERSION, Settings

MANAGED_BY = "im2txt-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TRAINING = "im2txt.dev/training"
LABEL_ROLE = "im2txt.dev/role"  # names.ROLES: stage1, stage2, export, tensorboard
LABEL_STAGE = "im2txt.dev/stage"  # "1", "2", "export": how the operator's Job index keys its Jobs
DATA_DIR = "/data/data"
OUTPUT_DIR = "/data/output"
TERMINATION_GRACE_SECONDS = 300
# The sync sidecar's final upload must end before the kubelet's SIGKILL: the grace period less a minute (at least 10).
FINAL_UPLOAD_DEADLINE_SECONDS = max(10, TERMINATION_GRACE_SECONDS - 60)
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
OUTPUT_CHECK = "output-check"
OUTPUT_NOT_WRITABLE = 3  # output-check's exit code (im2txt_storage.output_check.NOT_WRITABLE)
# Every container meets the restricted Pod Security Standard; the pod-level part is in pod_security.
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                      "runAsNonRoot": True}


@dataclass(frozen=True)
class Owner:
    """The training a child belongs to (for names, labels and ownerReferences)."""

    name: str
    namespace: str
    uid: str


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


def labels(owner: Owner, role: str, stage: str | None = None) -> dict[str, str]:
    """The labels of a child and its pods; ``stage`` ("1", "2", "export") marks the Jobs the operator watches."""
    out = {LABEL_TRAINING: owner.name, LABEL_ROLE: role}
    if stage is not None:
        out[LABEL_STAGE] = stage
    out[LABEL_MANAGED_BY] = MANAGED_BY
    return out


def metadata(owner: Owner, name: str, child_labels: Mapping[str, str],
             annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A child's metadata: its name, namespace, labels, facts for the controller (annotations), the owner."""
    meta: dict[str, Any] = {"name": name, "namespace": owner.namespace, "labels": dict(child_labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    meta["ownerReferences"] = [owner_reference(owner)]
    return meta


def ufile_env(settings: Settings, secret: str | None = None) -> list[dict[str, Any]]:
    """The UFile key pair (from ``secret``, default the training's spec.credentialsSecret) and endpoints."""
    def key(env: str, key: str) -> dict[str, Any]:
        name = secret or settings.credentials_secret
        return {"name": env, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}

    return [
        key("UFILE_PUBLIC_KEY", "publicKey"),
        key("UFILE_PRIVATE_KEY", "privateKey"),
        {"name": "UFILE_UPLOAD_SUFFIX", "value": settings.ufile.upload_suffix},
        {"name": "UFILE_DOWNLOAD_SUFFIX", "value": settings.ufile.download_suffix},
    ]


# What a storage container (fetch, sync, mirror, output-check) needs: files stream through 1 MiB buffers, so a
# Python process with the SDK stays far below the limits; they keep one from taking a node's memory, or more than
# a core from the trainer beside it. Kueue and the scheduler count the requests (docs/kueue.md).
STORAGE_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"},
                                     "limits": {"cpu": "1", "memory": "1Gi"}}


def storage(settings: Settings, name: str, command: str, args: Sequence[str], mounts: Sequence[Mapping[str, Any]],
            *, sidecar: bool = False, secret: str | None = None) -> dict[str, Any]:
    """A storage container (`python -m im2txt_storage <command>`); a native sidecar runs beside the main ones.
    ``secret``: another Secret's key pair than the training's (the TensorBoard mirror's read-only one)."""
    container: dict[str, Any] = {"name": name, "image": settings.image}
    if sidecar:
        container["restartPolicy"] = "Always"
    # Plain HTTP only by the cluster admin's choice (the operator's --ufile-insecure-http): a flag the operator
    # writes, not an environment variable, so neither the spec nor the image's ENV can turn HTTPS off.
    insecure = ["--insecure-http"] if settings.ufile.insecure_http else []
    container |= {"command": ["python", "-m", "im2txt_storage", command], "args": [*args, *insecure],
                  "env": ufile_env(settings, secret), "resources": copy.deepcopy(STORAGE_RESOURCES),
                  "volumeMounts": [dict(m) for m in mounts]}
    return container


def sync_args(settings: Settings) -> list[str]:
    """The sync sidecar's flags: its final upload after SIGTERM ends inside the pod's grace period."""
    return [f"--output-url={settings.output_path.url}", f"--output-dir={OUTPUT_DIR}",
            f"--interval={settings.checkpoint_interval_seconds}",
            f"--final-deadline-seconds={FINAL_UPLOAD_DEADLINE_SECONDS}"]


def mount(name: str, path: StoragePath, where: str, *, read_only: bool = False) -> dict[str, Any]:
    """A volume mount of a training path: a pvc:// path's sub-path as subPath."""
    out: dict[str, Any] = {"name": name, "mountPath": where}
    if isinstance(path, PvcPath) and path.sub_path:
        out["subPath"] = path.sub_path
    if read_only and isinstance(path, PvcPath):
        out["readOnly"] = True
    return out


def volume(name: str, path: StoragePath, size_limit: str | None = None, *, read_only: bool = False
           ) -> dict[str, Any]:
    """A pvc:// path's claim (``read_only``: mounted read-only, so the kubelet never applies fsGroup to the
    dataset's files either), or an emptyDir a ufile:// path is copied into."""
    if isinstance(path, PvcPath):
        return {"name": name, "persistentVolumeClaim": {"claimName": path.claim} | ({"readOnly": True}
                                                                                     if read_only else {})}
    return {"name": name, "emptyDir": {"sizeLimit": size_limit} if size_limit else {}}


def output_check(settings: Settings) -> list[dict[str, Any]]:
    """The first init container of a pod that writes a pvc:// output: exits OUTPUT_NOT_WRITABLE with a termination
    message naming spec.outputPath and the fix when the trainer's user cannot write there (a volume type that does
    not apply fsGroup). Runs as that user, under the restricted Pod Security Standard like every container."""
    output = settings.output_path
    if not isinstance(output, PvcPath):
        return []  # an emptyDir: always writable
    return [{"name": OUTPUT_CHECK, "image": settings.image, "command": ["python", "-m", "im2txt_storage.output_check"],
             "args": [f"--dir={OUTPUT_DIR}", f"--url={output.url}"], "resources": copy.deepcopy(STORAGE_RESOURCES),
             "volumeMounts": [mount("output", output, OUTPUT_DIR)]}]


def pod_failure_policy(containers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Evictions and preemptions do not count against backoffLimit; an unwritable output fails the Job at once
    (another pod on the same volume would fail the same way)."""
    rules: list[dict[str, Any]] = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    if any(c["name"] == OUTPUT_CHECK for c in containers):
        rules.append({"action": "FailJob", "onExitCodes": {"containerName": OUTPUT_CHECK, "operator": "In",
                                                           "values": [OUTPUT_NOT_WRITABLE]}})
    return {"rules": rules}


def pod_security(settings: Settings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        # Volumes (an output claim) are made group-writable for this group where the volume type applies fsGroup
        # (output_check covers the others); OnRootMismatch skips the recursive change on every start when the
        # claim's root already belongs to it (large claims start fast).
        "fsGroup": settings.run_as_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def template(settings: Settings, pod_labels: Mapping[str, str], *, init: Sequence[dict[str, Any]],
             containers: Sequence[dict[str, Any]], volumes: Sequence[dict[str, Any]],
             job: bool = True, place: bool = True) -> dict[str, Any]:
    """The pod template of every pod the operator makes. A Job's pod never restarts in place (a retried pod starts
    afresh and fetches the latest uploaded checkpoint), and its grace period covers the trainer's checkpoint on
    SIGTERM and then the sync sidecar's final upload. ``place``: the training's nodeSelector and tolerations (its
    GPU nodes), not for TensorBoard."""
    spec: dict[str, Any] = {}
    if job:
        spec |= {"restartPolicy": "Never", "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS}
    # No pod of ours talks to the Kubernetes API: no token in it.
    spec |= {"automountServiceAccountToken": False, "securityContext": pod_security(settings)}
    for container in [*init, *containers]:
        container["securityContext"] = copy.deepcopy(CONTAINER_SECURITY)
        container["terminationMessagePolicy"] = TERMINATION_MESSAGE_POLICY
    if init:
        spec["initContainers"] = list(init)
    spec["containers"] = list(containers)
    spec["volumes"] = list(volumes)
    if place and settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if place and settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    return {"metadata": {"labels": dict(pod_labels)}, "spec": spec}
