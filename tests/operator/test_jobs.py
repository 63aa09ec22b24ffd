"""jobs.build_job: golden manifests for both stages, and the UAI command lines byte for byte."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import HERE, load

from im2txt_operator.jobs import Owner, build_job, command_line
from im2txt_operator.spec import SpecError, parse_spec

GOLDEN = HERE / "golden"
UID = "0b6a3c1e-1111-2222-3333-444455556666"
CASES = [("training-ufile.yaml", 1), ("training-ufile.yaml", 2), ("training-pvc.yaml", 1),
         ("training-pvc.yaml", 2), ("training-full.yaml", 1), ("training-full.yaml", 2)]


def _job(example: str, stage: int) -> dict[str, Any]:
    training = load(example)
    meta = training["metadata"]
    return build_job(Owner(meta["name"], meta["namespace"], UID), parse_spec(training["spec"]), stage)


@pytest.mark.parametrize(("example", "stage"), CASES)
def test_golden(example: str, stage: int) -> None:
    path: Path = GOLDEN / f"{example.removesuffix('.yaml')}-stage{stage}.yaml"
    rendered = yaml.safe_dump(_job(example, stage), sort_keys=False)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert rendered == path.read_text(), f"{path.name} differs (UPDATE_GOLDEN=1 rewrites it; review the diff)"


def test_command_lines_byte_for_byte() -> None:
    s = parse_spec(load("training-ufile.yaml")["spec"])
    assert command_line(s, 1) == (
        "/data/train.py --input_file_pattern=/data/data/train-?????-of-00256 "
        "--inception_checkpoint_file=/data/data/inception_v3.ckpt --train_dir=/data/output/ --number_of_steps=1000000")
    assert command_line(s, 2) == (
        "/data/train.py --input_file_pattern=/data/data/train-?????-of-00256 --train_dir=/data/output/ "
        "--number_of_steps=3000000 --train_inception=True")
    full = parse_spec(load("training-full.yaml")["spec"])
    assert command_line(full, 2).endswith("--number_of_steps=2000000 --train_inception=True --log_every_n_steps=100")


@pytest.mark.parametrize("stage", [1, 2])
def test_trainer_container_joins_to_the_command(stage: int) -> None:
    job = _job("training-ufile.yaml", stage)
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    s = parse_spec(load("training-ufile.yaml")["spec"])
    assert " ".join(trainer["command"] + trainer["args"]) == command_line(s, stage)
    assert trainer["workingDir"] == "/data"
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_identity_labels_and_owner() -> None:
    job = _job("training-full.yaml", 2)
    meta = job["metadata"]
    assert meta["name"] == "coco-full-stage2" and meta["namespace"] == "ml"
    assert meta["labels"] == {"im2txt.dev/training": "coco-full", "im2txt.dev/role": "stage2", "im2txt.dev/stage": "2",
                              "app.kubernetes.io/managed-by": "im2txt-operator",
                              "kueue.x-k8s.io/queue-name": "gpu-queue"}
    # Facts the controller reads back are stamped, not parsed from the trainer's args.
    assert meta["annotations"] == {"im2txt.dev/target-step": "2000000"}
    assert job["spec"]["template"]["metadata"]["labels"]["im2txt.dev/role"] == "stage2"
    assert meta["ownerReferences"] == [{"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                        "name": "coco-full", "uid": UID, "controller": True,
                                        "blockOwnerDeletion": True}]
    assert job["spec"]["activeDeadlineSeconds"] == 1209600 and job["spec"]["backoffLimit"] == 5


def test_pvc_only_has_no_storage_containers() -> None:
    pod = _job("training-pvc.yaml", 1)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["output-check"]  # no fetch, no sync
    # The data claim read-only at the volume too: the kubelet then applies no fsGroup to the dataset's files.
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "coco-data", "readOnly": True}},
                              {"name": "output", "persistentVolumeClaim": {"claimName": "im2txt-runs"}}]
    mounts = pod["containers"][0]["volumeMounts"]
    assert mounts == [{"name": "data", "mountPath": "/data/data", "subPath": "mscoco/tfrecords", "readOnly": True},
                      {"name": "output", "mountPath": "/data/output", "subPath": "coco/model"}]


def test_every_storage_container_has_bounded_resources() -> None:
    for example in ("training-ufile.yaml", "training-full.yaml", "training-pvc.yaml"):
        pod = _job(example, 1)["spec"]["template"]["spec"]
        for container in pod["initContainers"]:
            assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                              "limits": {"cpu": "1", "memory": "1Gi"}}, (example, container["name"])


@pytest.mark.parametrize(("gpus", "resources", "expected"), [
    (1, None, {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": "1"}}),
    (2, None, {"requests": {"cpu": "8", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": "2"}}),
    (0, None, {"requests": {"cpu": "1", "memory": "2Gi"}}),  # a CPU-only training fits a small node
    # What the user names is theirs: a request, or a limit alone (the API then defaults the request to it).
    (1, {"requests": {"cpu": "2"}}, {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": "1"}}),
    (1, {"limits": {"memory": "4Gi"}},
     {"requests": {"cpu": "4"}, "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"}}),
    (1, {"requests": {"cpu": 6, "memory": "24Gi"}},
     {"requests": {"cpu": "6", "memory": "24Gi"}, "limits": {"nvidia.com/gpu": "1"}}),
])
def test_trainer_requests_default_per_gpu_and_yield_to_the_spec(gpus: int, resources: dict[str, Any] | None,
                                                                expected: dict[str, Any]) -> None:
    spec = load("training-pvc.yaml")["spec"] | {"gpus": gpus}
    if resources is not None:
        spec["resources"] = resources
    else:
        spec.pop("resources", None)
    trainer = build_job(Owner("t", "ml", UID), parse_spec(spec), 1)["spec"]["template"]["spec"]["containers"][0]
    assert trainer["resources"] == expected


@pytest.mark.parametrize(("queue", "suspend"), [("gpu-queue", True), (None, False)])
def test_a_queued_job_is_created_suspended(queue: str | None, suspend: bool) -> None:
    """Kueue unsuspends it on admission; the operator never writes spec.suspend after the create."""
    spec = load("training-pvc.yaml")["spec"]
    spec = {k: v for k, v in spec.items() if k != "queueName"} | ({"queueName": queue} if queue else {})
    job = build_job(Owner("t", "ml", UID), parse_spec(spec), 1)
    assert job["spec"]["suspend"] is suspend
    assert (job["metadata"]["labels"].get("kueue.x-k8s.io/queue-name"), job["spec"]["suspend"]) == (queue, suspend)


def test_mixed_paths_fetch_only_the_ufile_side() -> None:
    pod = _job("training-full.yaml", 1)["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["initContainers"]]
    assert names == ["output-check", "fetch"]  # output is a PVC: checked, no sync sidecar
    assert pod["initContainers"][1]["args"] == ["--data-url=ufile://im2txt-data/mscoco/", "--data-dir=/data/data"]


def test_keys_only_from_the_secret() -> None:
    job = _job("training-ufile.yaml", 1)
    text = yaml.safe_dump(job)
    for c in job["spec"]["template"]["spec"]["initContainers"]:
        env = {e["name"]: e for e in c["env"]}
        assert env["UFILE_PUBLIC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "ufile-keys", "key": "publicKey"}
        assert env["UFILE_PRIVATE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "ufile-keys", "key": "privateKey"}
        assert not any("key" in a.lower() for a in c["args"])
    assert "sync" in text and job["spec"]["template"]["spec"]["initContainers"][1]["restartPolicy"] == "Always"


@pytest.mark.parametrize(("example", "stage"), CASES)
def test_every_container_meets_the_restricted_pod_security_standard(example: str, stage: int) -> None:
    pod = _job(example, stage)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsUser"] == 1000 and security["runAsGroup"] == 1000 and security["fsGroup"] == 1000
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    assert [c["name"] for c in containers] in (["output-check", "trainer"], ["fetch", "sync", "trainer"],
                                               ["output-check", "fetch", "trainer"])
    for container in containers:
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                                "runAsNonRoot": True}, container["name"]
        # A failed container says why in its status (its own one-line reason, else the end of its log).
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", container["name"]


@pytest.mark.parametrize("example", ["training-pvc.yaml", "training-full.yaml"])
def test_a_pvc_output_is_checked_first_and_an_unwritable_one_fails_the_job_at_once(example: str) -> None:
    job = _job(example, 1)
    pod = job["spec"]["template"]["spec"]
    check = pod["initContainers"][0]
    output = parse_spec(load(example)["spec"]).output_path
    assert check["name"] == "output-check" and check["command"] == ["python", "-m", "im2txt_storage.output_check"]
    assert check["args"] == ["--dir=/data/output", f"--url={output.url}"]
    trainer_output = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "output")
    assert check["volumeMounts"] == [trainer_output]  # the very directory the trainer writes
    assert job["spec"]["podFailurePolicy"]["rules"][1] == {
        "action": "FailJob", "onExitCodes": {"containerName": "output-check", "operator": "In", "values": [3]}}


def test_the_sync_sidecars_final_upload_ends_inside_the_grace_period() -> None:
    pod = _job("training-ufile.yaml", 1)["spec"]["template"]["spec"]
    sync = next(c for c in pod["initContainers"] if c["name"] == "sync")
    assert pod["terminationGracePeriodSeconds"] == 300
    assert "--final-deadline-seconds=240" in sync["args"]
    assert "podFailurePolicy" not in _job("training-ufile.yaml", 1)["spec"] or all(
        r["action"] != "FailJob" for r in _job("training-ufile.yaml", 1)["spec"]["podFailurePolicy"]["rules"])


def test_uid_and_gid_are_configurable_and_never_root() -> None:
    training = load("training-pvc.yaml")
    spec = {**training["spec"], "runAsUser": 65532, "runAsGroup": 2000}
    pod = build_job(Owner("t", "ns", UID), parse_spec(spec), 1)["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"],
            pod["securityContext"]["fsGroup"]) == (65532, 2000, 2000)
    for field in ("runAsUser", "runAsGroup"):
        with pytest.raises(SpecError) as e:
            parse_spec({**training["spec"], field: 0})
        assert e.value.field == f"spec.{field}"


def test_multi_node_stage_is_one_indexed_job_with_a_headless_service() -> None:
    from im2txt_operator.jobs import build_worker_service, worker_hosts

    training = load("training-ufile.yaml")
    settings = parse_spec({**training["spec"], "gpus": 4, "numNodes": 2, "backoffLimit": 3})
    owner = Owner("coco", "ml", UID)
    job = build_job(owner, settings, 2)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["backoffLimit"] == 6  # a failed attempt may fail every worker: 3 attempts of 2 pods
    assert pod["subdomain"] == "coco-stage2"
    trainer = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["IM2TXT_WORKER_HOSTS"] == "coco-stage2-0.coco-stage2:2222,coco-stage2-1.coco-stage2:2222"
    assert worker_hosts(owner, 2, 2) == env["IM2TXT_WORKER_HOSTS"]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "4"  # per pod
    init = {c["name"]: c for c in pod["initContainers"]}
    assert "--chief-only" in init["sync"]["args"] and "--chief-only" not in init["fetch"]["args"]  # all fetch
    service = build_worker_service(owner, 2)
    assert service["metadata"]["name"] == "coco-stage2" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "coco-stage2"}
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["metadata"]["ownerReferences"][0]["uid"] == UID
    # One node stays a plain Job, as before.
    single = build_job(owner, parse_spec(training["spec"]), 2)
    assert "completionMode" not in single["spec"] and "subdomain" not in single["spec"]["template"]["spec"]
    assert "IM2TXT_WORKER_HOSTS" not in str(single)
