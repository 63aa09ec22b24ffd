"""Settings -> the TensorBoard Deployment and Service of a training (spec.tensorboard.enabled).

Pure, like jobs.py. TensorBoard reads the training's output: a pvc:// output is mounted read-only; a ufile://
output's event files are mirrored into an emptyDir by a sidecar (`im2txt_storage mirror`: downloads only, the
keys through secretKeyRef). The trainer image has both TensorBoard and the storage commands.
"""

from __future__ import annotations

from typing import Any

from im2txt_operator import names
from im2txt_operator.jobs import (
    LABEL_MANAGED_BY,
    LABEL_TRAINING,
    MANAGED_BY,
    Owner,
    pod_security,
    secure,
    ufile_env,
)
from im2txt_operator.paths import PvcPath, UFilePath
from im2txt_operator.spec import GROUP, KIND, VERSION, Settings

PORT = 6006
LOGS = "/tensorboard/logs"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT = "tensorboard"


def address(owner: Owner) -> str:
    """The in-cluster URL of a training's TensorBoard (status.tensorboard)."""
    return f"http://{names.tensorboard(owner.name)}.{owner.namespace}.svc:{PORT}"


def _labels(owner: Owner) -> dict[str, str]:
    return {LABEL_TRAINING: owner.name, LABEL_COMPONENT: COMPONENT, LABEL_MANAGED_BY: MANAGED_BY}


def _metadata(owner: Owner) -> dict[str, Any]:
    return {"name": names.tensorboard(owner.name), "namespace": owner.namespace, "labels": _labels(owner),
            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name,
                                 "uid": owner.uid, "controller": True, "blockOwnerDeletion": True}]}


def build_deployment(owner: Owner, settings: Settings) -> dict[str, Any]:
    output = settings.output_path
    tensorboard: dict[str, Any] = {
        "name": "tensorboard",
        "image": settings.image,
        "command": ["tensorboard"],
        # The mirror replaces a grown event file (write, then rename): TensorBoard must look for replaced files,
        # or it keeps reading the old one and never shows new steps (needs TensorFlow: the trainer image has it).
        "args": [f"--logdir={LOGS}", "--host=0.0.0.0", f"--port={PORT}", "--reload_interval=30",
                 "--detect_file_replacement=true", "--load_fast=false"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "logs", "mountPath": LOGS, "readOnly": True}],
    }
    pod: dict[str, Any] = {"automountServiceAccountToken": False, "securityContext": pod_security(settings)}
    if isinstance(output, PvcPath):
        if output.sub_path:
            tensorboard["volumeMounts"][0]["subPath"] = output.sub_path
        pod["volumes"] = [{"name": "logs", "persistentVolumeClaim": {"claimName": output.claim, "readOnly": True}}]
    else:
        assert isinstance(output, UFilePath)
        pod["initContainers"] = [{
            "name": "mirror",
            "image": settings.image,
            # A native sidecar: starts before TensorBoard and runs beside it; it only ever downloads.
            "restartPolicy": "Always",
            "command": ["python", "-m", "im2txt_storage", "mirror"],
            "args": [f"--output-url={output.url}", f"--output-dir={LOGS}",
                     f"--interval={settings.tensorboard.interval_seconds}"],
            "env": ufile_env(settings),
            "volumeMounts": [{"name": "logs", "mountPath": LOGS}],
        }]
        pod["volumes"] = [{"name": "logs", "emptyDir": {"sizeLimit": "1Gi"}}]
    secure([*pod.get("initContainers", []), tensorboard])
    pod["containers"] = [tensorboard]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner),
        "spec": {"replicas": 1, "selector": {"matchLabels": _labels(owner)},
                 "template": {"metadata": {"labels": _labels(owner)}, "spec": pod}},
    }


def build_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner),
        "spec": {"selector": _labels(owner),
                 "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]},
    }
