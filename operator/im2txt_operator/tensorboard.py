"""Settings -> the TensorBoard Deployment and Service of a training (spec.tensorboard.enabled).

Pure, like jobs.py. TensorBoard reads the training's output: a pvc:// output is mounted read-only; a ufile://
output's event files are mirrored into an emptyDir by a sidecar (`im2txt_storage mirror`: downloads only, the
keys through secretKeyRef). The trainer image has both TensorBoard and the storage commands.
"""

from __future__ import annotations

from typing import Any

from im2txt_operator import names, pods
from im2txt_operator.paths import PvcPath, UFilePath
from im2txt_operator.pods import Owner
from im2txt_operator.spec import Settings

PORT = 6006
LOGS = "/tensorboard/logs"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT = "tensorboard"


def address(owner: Owner) -> str:
    """The in-cluster URL of a training's TensorBoard (status.tensorboard)."""
    return f"http://{names.tensorboard(owner.name)}.{owner.namespace}.svc:{PORT}"


def _selector(owner: Owner) -> dict[str, str]:
    """What the Service and the Deployment select (a Deployment's selector never changes: keep it as it was)."""
    return {pods.LABEL_TRAINING: owner.name, LABEL_COMPONENT: COMPONENT, pods.LABEL_MANAGED_BY: pods.MANAGED_BY}


def _labels(owner: Owner) -> dict[str, str]:
    return {**pods.labels(owner, names.TENSORBOARD), LABEL_COMPONENT: COMPONENT}


def _metadata(owner: Owner) -> dict[str, Any]:
    return pods.metadata(owner, names.tensorboard(owner.name), _labels(owner))


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
        # TensorBoard holds the scalars it has read in memory: bounded, so one training's board cannot take a node.
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "logs", "mountPath": LOGS, "readOnly": True}],
    }
    init: list[dict[str, Any]] = []
    if isinstance(output, PvcPath):
        tensorboard["volumeMounts"] = [pods.mount("logs", output, LOGS) | {"readOnly": True}]
        volume = {"name": "logs", "persistentVolumeClaim": {"claimName": output.claim, "readOnly": True}}
    else:
        assert isinstance(output, UFilePath)
        # A native sidecar: starts before TensorBoard and runs beside it; it only ever downloads.
        args = [f"--output-url={output.url}", f"--output-dir={LOGS}",
                f"--interval={settings.tensorboard.interval_seconds}"]
        # Read-only keys when the user gave some (spec.tensorboard.credentialsSecret): the board's pod, which
        # serves HTTP to the namespace, then holds nothing that can write or delete the training's output.
        init.append(pods.storage(settings, "mirror", "mirror", args, [{"name": "logs", "mountPath": LOGS}],
                                 sidecar=True, secret=settings.tensorboard.credentials_secret))
        volume = {"name": "logs", "emptyDir": {"sizeLimit": "1Gi"}}
    template = pods.template(settings, _labels(owner), init=init, containers=[tensorboard], volumes=[volume],
                             job=False, place=False)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner),
        "spec": {"replicas": 1, "selector": {"matchLabels": _selector(owner)}, "template": template},
    }


def build_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner),
        "spec": {"selector": _selector(owner),
                 "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]},
    }
