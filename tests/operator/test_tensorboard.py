"""tensorboard: the Deployment and Service of a training's TensorBoard, for pvc:// and ufile:// outputs."""

from __future__ import annotations

from typing import Any

from im2txt_operator.jobs import Owner
from im2txt_operator.spec import parse_spec
from im2txt_operator.tensorboard import address, build_deployment, build_service

OWNER = Owner("coco", "ml", "0b6a3c1e-1111-2222-3333-444455556666")
UFILE = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
         "credentialsSecret": "ufile-keys", "tensorboard": {"enabled": True, "intervalSeconds": 30}}
PVC = {"dataPath": "pvc://data/coco/", "outputPath": "pvc://runs/coco/run1", "tensorboard": {"enabled": True}}


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return build_deployment(OWNER, parse_spec(spec))["spec"]["template"]["spec"]


def test_pvc_output_is_mounted_read_only_at_its_sub_path() -> None:
    pod = _pod(PVC)
    assert "initContainers" not in pod
    (tb,) = pod["containers"]
    assert tb["command"] == ["tensorboard"] and "--logdir=/tensorboard/logs" in tb["args"]
    assert "--host=0.0.0.0" in tb["args"] and "--port=6006" in tb["args"]
    assert "--detect_file_replacement=true" in tb["args"]  # the mirror replaces grown event files
    assert tb["volumeMounts"] == [{"name": "logs", "mountPath": "/tensorboard/logs", "readOnly": True,
                                   "subPath": "coco/run1"}]
    assert pod["volumes"] == [{"name": "logs", "persistentVolumeClaim": {"claimName": "runs", "readOnly": True}}]


def test_ufile_output_is_mirrored_by_a_read_only_sidecar_with_the_keys_from_the_secret() -> None:
    pod = _pod(UFILE)
    (mirror,) = pod["initContainers"]
    assert mirror["restartPolicy"] == "Always"  # a native sidecar beside TensorBoard
    assert mirror["command"] == ["python", "-m", "im2txt_storage", "mirror"]
    assert mirror["args"] == ["--output-url=ufile://im2txt-out/run1/", "--output-dir=/tensorboard/logs",
                              "--interval=30"]
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in mirror["env"] if "valueFrom" in e}
    assert keys == {"UFILE_PUBLIC_KEY": {"name": "ufile-keys", "key": "publicKey"},
                    "UFILE_PRIVATE_KEY": {"name": "ufile-keys", "key": "privateKey"}}
    assert pod["volumes"][0]["emptyDir"] and pod["containers"][0]["volumeMounts"][0]["readOnly"] is True


def test_pods_meet_the_restricted_standard_like_the_trainings() -> None:
    for spec in (UFILE, PVC):
        pod = _pod(spec)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_owned_by_the_training_and_the_service_selects_the_pods() -> None:
    deployment, service = build_deployment(OWNER, parse_spec(PVC)), build_service(OWNER)
    for obj in (deployment, service):
        assert obj["metadata"]["name"] == "coco-tensorboard" and obj["metadata"]["namespace"] == "ml"
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Im2txtTraining", "coco", OWNER.uid,
                                                                             True)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 6006, "targetPort": "http", "protocol": "TCP"}]
    assert address(OWNER) == "http://coco-tensorboard.ml.svc:6006"
