"""manifests/policies/operator-limits on a real API server (issue 18.9): with the policies installed, the operator's
own ServiceAccount cannot create a pod template that takes a node (hostPath, privileged, host namespaces) or
borrows a ServiceAccount, nor any child no training controls; the real operator still makes every child it needs;
and nobody else is affected."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_support import OPERATOR_NS, OPERATOR_SA, ROOT, Api, ApiError, OperatorProcess, wait_for
from control_plane import ControlPlane

pytestmark = pytest.mark.timeout(240)

FOLDER = ROOT / "manifests" / "policies" / "operator-limits"
OWNER = [{"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "name": "coco",
          "uid": "6f1c1e64-0000-4000-8000-000000000001", "controller": True}]
JOB: dict[str, Any] = {
    "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe", "ownerReferences": OWNER},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                                   "containers": [{"name": "c", "image": "busybox"}]}}}}
SPEC: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                        "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                        "gpus": 0, "numNodes": 2, "tensorboard": {"enabled": True}}


@pytest.fixture(scope="module")
def as_operator(installed: ControlPlane) -> Api:
    """The API as whoever holds the operator's ServiceAccount token."""
    token = installed.kubectl("create", "token", OPERATOR_SA, "-n", OPERATOR_NS, "--duration=1h").stdout.strip()
    return Api(installed, token)


def refusal(api: Api, path: str, body: dict[str, Any]) -> str | None:
    """The API server's message when it refuses ``body`` (a dry run: nothing is stored); None when it admits it."""
    try:
        api.request("POST", path, body, params={"dryRun": "All"})
    except ApiError as e:
        if e.status not in (403, 422):
            raise
        return str(e.body.get("message"))
    return None


@pytest.fixture
def limits(installed: ControlPlane, admin: Api, as_operator: Api, ns: str) -> Iterator[None]:
    admin.needs_admission_policies()
    installed.kubectl("apply", "--server-side", "-k", str(FOLDER))
    hostpath = copy.deepcopy(JOB)
    hostpath["spec"]["template"]["spec"]["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    try:
        wait_for(lambda: refusal(as_operator, as_operator.jobs(ns), hostpath), what="the policies enforced")
        yield
    finally:
        installed.kubectl("delete", "-k", str(FOLDER), "--wait=true")
        wait_for(lambda: refusal(as_operator, as_operator.jobs(ns), hostpath) is None,
                 what="the policies no longer enforced")


def _job(**pod: Any) -> dict[str, Any]:
    job = copy.deepcopy(JOB)
    job["spec"]["template"]["spec"] |= pod
    return job


def test_a_stolen_operator_token_cannot_start_a_pod_that_takes_a_node(admin: Api, as_operator: Api, ns: str,
                                                                      limits: None) -> None:
    jobs = as_operator.jobs(ns)
    container = {"name": "c", "image": "busybox"}
    refused = {
        "hostPath": _job(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        "privileged": _job(containers=[container | {"securityContext": {"privileged": True}}]),
        "escalation": _job(initContainers=[{"name": "init", "image": "busybox",
                                           "securityContext": {"allowPrivilegeEscalation": True}}]),
        "hostNetwork": _job(hostNetwork=True),
        "hostPID": _job(hostPID=True),
        "serviceAccount": _job(serviceAccountName="argocd-application-controller"),
        "token": _job(automountServiceAccountToken=True),
        "no owner": {**JOB, "metadata": {"name": "probe"}},
    }
    for what, body in refused.items():
        message = refusal(as_operator, jobs, body)
        assert message is not None and "the im2txt operator may " in message, (what, message)
    assert refusal(as_operator, jobs, JOB) is None  # what a training's Job looks like passes
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe"},
               "spec": {"ports": [{"port": 80}]}}
    assert "may only create Services" in (refusal(as_operator, as_operator.core(ns, "services"), service) or "")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                      "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [container]}}}}
    assert refusal(as_operator, f"/apis/apps/v1/namespaces/{ns}/deployments", deployment) is not None
    # Only the operator's ServiceAccount is bound by them: an admin's hostPath Job is the admin's business.
    assert refusal(admin, admin.jobs(ns), refused["hostPath"]) is None


def test_the_operator_still_makes_every_child_under_the_policies(admin: Api, ns: str, limits: None,
                                                                 operator: OperatorProcess) -> None:
    admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.job(ns, "coco-stage1"), timeout=60, what="the stage 1 Job",
             on_timeout=lambda: operator.log[-3000:])
    assert admin.get(admin.core(ns, "services", "coco-stage1")) is not None
    assert admin.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/coco-stage1") is not None
    wait_for(lambda: admin.get(f"/apis/apps/v1/namespaces/{ns}/deployments/coco-tensorboard"), timeout=60,
             what="the TensorBoard Deployment")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready")
    # Suspending deletes the stage's Job; resuming creates it again (a CREATE the policies check too).
    first = admin.job(ns, "coco-stage1")
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"suspend": True}})
    wait_for(lambda: admin.job(ns, "coco-stage1") is None, timeout=60, what="the Job deleted (suspended)")
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"suspend": False}})
    wait_for(lambda: (admin.job(ns, "coco-stage1") or first)["metadata"]["uid"] != first["metadata"]["uid"],
             what="the Job created again (resumed)")
    assert "denied request" not in operator.log and "ValidatingAdmissionPolicy" not in operator.log
