"""pods: the one pod-template builder: owner, labels, restricted security, storage containers and volumes."""

from __future__ import annotations

from typing import Any

import pytest

from im2txt_operator import evaluation, export, jobs, pods, tensorboard
from im2txt_operator.spec import SpecError, parse_spec

UFILE = {"dataPath": "ufile://data/coco/", "outputPath": "ufile://out/run/", "credentialsSecret": "keys",
         "nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]}
PVC = {"dataPath": "pvc://coco-data/mscoco", "outputPath": "pvc://runs/coco/"}
OWNER = pods.Owner("coco", "ml", "uid-1")


def test_metadata_names_the_training_as_controller_owner() -> None:
    meta = pods.metadata(OWNER, "coco-stage1", pods.labels(OWNER, "stage1", "1"), {"im2txt.dev/target-step": "5"})
    assert meta["ownerReferences"] == [{"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                        "name": "coco", "uid": "uid-1", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["labels"] == {"im2txt.dev/training": "coco", "im2txt.dev/role": "stage1", "im2txt.dev/stage": "1",
                              "app.kubernetes.io/managed-by": "im2txt-operator"}
    assert meta["annotations"] == {"im2txt.dev/target-step": "5"}


def test_every_container_is_restricted_and_no_token_is_mounted() -> None:
    settings = parse_spec(UFILE)
    sync = pods.storage(settings, "sync", "sync", pods.sync_args(settings), [], sidecar=True)
    trainer = {"name": "trainer", "image": settings.image}
    spec = pods.template(settings, {"a": "b"}, init=[sync], containers=[trainer], volumes=[])["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in (*spec["initContainers"], *spec["containers"]):
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "runAsNonRoot": True}, c["name"]
    assert spec["nodeSelector"] == {"pool": "gpu"} and spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    tensorboard = pods.template(settings, {}, init=[], containers=[{"name": "tb"}], volumes=[], job=False,
                                place=False)["spec"]
    assert "nodeSelector" not in tensorboard and "restartPolicy" not in tensorboard


def test_keys_come_from_the_secret_never_as_values() -> None:
    settings = parse_spec(UFILE)
    env = pods.storage(settings, "fetch", "fetch", [], [])["env"]
    secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert secret == {"UFILE_PUBLIC_KEY": {"name": "keys", "key": "publicKey"},
                      "UFILE_PRIVATE_KEY": {"name": "keys", "key": "privateKey"}}
    assert all("KEY" not in e["name"] or "valueFrom" in e for e in env)


def test_the_sidecars_final_upload_ends_inside_the_grace_period() -> None:
    args = pods.sync_args(parse_spec(UFILE))
    deadline = int(next(a for a in args if a.startswith("--final-deadline-seconds=")).split("=")[1])
    assert deadline + 60 <= pods.TERMINATION_GRACE_SECONDS


def test_a_pvc_path_mounts_its_sub_path_and_the_data_read_only() -> None:
    settings = parse_spec(PVC)
    assert pods.mount("data", settings.data_path, pods.DATA_DIR, read_only=True) == {
        "name": "data", "mountPath": "/data/data", "subPath": "mscoco", "readOnly": True}
    assert pods.volume("data", settings.data_path, read_only=True) == {
        "name": "data", "persistentVolumeClaim": {"claimName": "coco-data", "readOnly": True}}
    assert pods.volume("data", parse_spec(UFILE).data_path, "100Gi") == {"name": "data",
                                                                        "emptyDir": {"sizeLimit": "100Gi"}}
    check = pods.output_check(settings)
    assert [c["name"] for c in check] == [pods.OUTPUT_CHECK] and pods.output_check(parse_spec(UFILE)) == []
    rules = pods.pod_failure_policy(check)["rules"]
    assert rules[0]["action"] == "Ignore" and rules[1]["onExitCodes"]["values"] == [pods.OUTPUT_NOT_WRITABLE]


def _storage_containers(settings: Any) -> list[dict[str, Any]]:
    """Every container that runs `python -m im2txt_storage ...` in every pod the operator builds."""
    owner = OWNER
    built = [jobs.build_job(owner, settings, 1), jobs.build_job(owner, settings, 2),
             export.build_job(owner, settings), tensorboard.build_deployment(owner, settings),
             evaluation.build_deployment(owner, settings)]
    out = []
    for obj in built:
        spec = obj["spec"]["template"]["spec"]
        out += [c for c in (*spec.get("initContainers", []), *spec["containers"])
                if c.get("command", [])[:3] == ["python", "-m", "im2txt_storage"]]
    return out


def test_ufile_traffic_is_https_unless_the_admin_opts_in_to_plain_http() -> None:
    """Plain HTTP is the operator's --ufile-insecure-http alone: a flag on the command line the operator writes
    (no spec field, no environment variable a tenant's image could set)."""
    spec = UFILE | {"tensorboard": {"enabled": True}}
    default = _storage_containers(parse_spec(spec))
    assert {c["name"] for c in default} >= {"fetch", "sync", "mirror"}
    assert all("--insecure-http" not in c["args"] for c in default)
    assert all(not any("HTTP" in e["name"] or "SSL" in e["name"] for e in c["env"]) for c in default)
    opted_in = _storage_containers(parse_spec(spec, insecure_http=True))
    assert len(opted_in) == len(default) and all(c["args"][-1] == "--insecure-http" for c in opted_in)
    with pytest.raises(SpecError, match=r"spec\.ufile\.insecureHttp"):
        parse_spec(spec | {"ufile": {"insecureHttp": True}})


def test_the_tensorboard_mirror_takes_the_read_only_key_pair_when_given() -> None:
    """spec.tensorboard.credentialsSecret: only the mirror of TensorBoard's pod uses it; the stages' fetch and
    sync, the export and the evaluation (which uploads its results) keep the training's key pair."""
    def secrets_of(container: dict[str, Any]) -> set[str]:
        return {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}

    spec = UFILE | {"tensorboard": {"enabled": True, "credentialsSecret": "ufile-read-only"}}
    for c in _storage_containers(parse_spec(spec)):
        mirror_of_tensorboard = c["name"] == "mirror"
        assert secrets_of(c) == {"ufile-read-only" if mirror_of_tensorboard else "keys"}, c["name"]
    assert {c["name"] for c in _storage_containers(parse_spec(spec))} >= {"mirror", "fetch", "sync"}
    without = UFILE | {"tensorboard": {"enabled": True}}
    assert all(secrets_of(c) == {"keys"} for c in _storage_containers(parse_spec(without)))
