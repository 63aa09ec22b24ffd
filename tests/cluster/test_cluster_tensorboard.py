"""A training's TensorBoard on a real API server: objects, restricted pods, ownership and garbage collection."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, wait_for

pytestmark = pytest.mark.timeout(240)

DEPLOYMENT = "/apis/apps/v1/namespaces/{ns}/deployments/coco-tensorboard"
SERVICE = "/api/v1/namespaces/{ns}/services/coco-tensorboard"
SPEC: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                        "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                        "gpus": 0, "tensorboard": {"enabled": True}}


def test_tensorboard_runs_restricted_and_goes_with_its_training(admin: Api, ns: str,
                                                                 operator: OperatorProcess) -> None:
    admin.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    training = admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.status(ns, "coco").get("tensorboard"), what="status.tensorboard")
    assert admin.status(ns, "coco")["tensorboard"] == f"http://coco-tensorboard.{ns}.svc:6006"
    deployment, service = admin.get(DEPLOYMENT.format(ns=ns)), admin.get(SERVICE.format(ns=ns))
    assert deployment is not None and service is not None
    for obj in (deployment, service):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == training["metadata"]["uid"]
    assert service["spec"]["ports"][0]["port"] == 6006 and service["spec"]["clusterIP"]
    # The Deployment and ReplicaSet controllers make its pod, and the restricted namespace admits it.
    pods = wait_for(lambda: admin.request("GET", admin.core(ns, "pods"), params={
        "labelSelector": "app.kubernetes.io/component=tensorboard"})["items"], timeout=60, what="the TensorBoard pod",
        on_timeout=lambda: str([e.get("message") for e in admin.request("GET", admin.core(ns, "events"))["items"]]))
    assert [c["name"] for c in pods[0]["spec"]["initContainers"]] == ["mirror"]
    # Deleting the training deletes its TensorBoard (garbage collection; the operator deletes nothing).
    admin.delete(admin.trainings(ns, "coco"))
    wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)) is None and admin.get(SERVICE.format(ns=ns)) is None,
             timeout=60, what="the TensorBoard garbage-collected")


def test_disabling_tensorboard_removes_it(admin: Api, ns: str, operator: OperatorProcess) -> None:
    admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)), what="the Deployment")
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"tensorboard": {"enabled": False}}})
    wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)) is None and admin.get(SERVICE.format(ns=ns)) is None,
             what="the TensorBoard deleted")
    wait_for(lambda: "tensorboard" not in admin.status(ns, "coco"), what="status.tensorboard removed")
    refused = [line for line in operator.log.splitlines() if "cannot" in line and "forbidden: User" in line]
    assert not refused, refused


def test_the_mirror_uses_the_read_only_key_pair_when_given(admin: Api, ns: str, operator: OperatorProcess) -> None:
    """spec.tensorboard.credentialsSecret (a UFile token that may only list and download): TensorBoard's pod
    references that Secret alone; the stage's fetch and sync keep the training's key pair."""
    spec = SPEC | {"tensorboard": {"enabled": True, "credentialsSecret": "ufile-read-only"}}
    admin.new_training(ns, "coco", spec)
    deployment = wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)), what="the Deployment")
    job = wait_for(lambda: admin.get(f"/apis/batch/v1/namespaces/{ns}/jobs/coco-stage1"), what="the stage Job")

    def secrets(pod: dict[str, Any]) -> dict[str, set[str]]:
        return {c["name"]: {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e}
                for c in (*pod.get("initContainers", []), *pod["containers"])}

    assert secrets(deployment["spec"]["template"]["spec"]) == {"mirror": {"ufile-read-only"}, "tensorboard": set()}
    stage = secrets(job["spec"]["template"]["spec"])
    assert stage["fetch"] == stage["sync"] == {"ufile-keys"} and "ufile-read-only" not in set().union(*stage.values())
