"""Every child of a training on a real API server (issue 18.1, 18.3): an object of someone else that holds a child's
name is named in status and never touched, and a child the API server does not take is in status at once (Ready
False with the server's reason), then tried again with backoff until it goes through."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, still, wait_for

pytestmark = pytest.mark.timeout(240)

PVC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                       "stage2NumberOfSteps": 300, "gpus": 0}
TENSORBOARD: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                               "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                               "gpus": 0, "tensorboard": {"enabled": True}}
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"


def _claims(admin: Api, ns: str) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)


def _tenants_service(admin: Api, ns: str, name: str) -> dict[str, Any]:
    """A Service a tenant made (no owner), that routes to their own app."""
    return admin.create(admin.core(ns, "services"), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"team": "web"}},
        "spec": {"selector": {"app": "shop"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}})


def _ready(admin: Api, ns: str, reason: str) -> dict[str, Any]:
    return wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("reason") == reason and c,
                    what=f"Ready=False {reason}", on_timeout=lambda: str(admin.status(ns, "coco")))


def test_a_tenants_service_with_the_tensorboard_name_is_named_and_left_alone(admin: Api, ns: str,
                                                                               operator: OperatorProcess) -> None:
    theirs = _tenants_service(admin, ns, "coco-tensorboard")
    admin.new_training(ns, "coco", TENSORBOARD)
    ready = _ready(admin, ns, "ServiceNotOwned")
    assert ready["status"] == "False"
    assert ready["message"].startswith(f"metadata.name: Service coco-tensorboard in namespace {ns} already exists"), \
        ready["message"]
    assert "it has no controller" in ready["message"]
    # The stages do not wait for TensorBoard: stage 1 runs; its own Deployment was made.
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="the stage 1 Job")
    assert admin.status(ns, "coco")["phase"] == "Running"
    assert admin.get(DEPLOYMENTS.format(ns=ns) + "/coco-tensorboard") is not None
    # Retried with backoff, and never patched: the same object, version, selector and ports.
    still(lambda: (s := admin.get(admin.core(ns, "services", "coco-tensorboard"))) is not None
          and s["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"], 4)
    assert [e["reason"] for e in admin.events(ns, "coco")].count("ServiceNotOwned") == 1
    # Turning TensorBoard off deletes the training's own Deployment and not the tenant's Service.
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"tensorboard": {"enabled": False}}})
    wait_for(lambda: admin.get(DEPLOYMENTS.format(ns=ns) + "/coco-tensorboard") is None, what="its Deployment gone")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")
    still(lambda: (s := admin.get(admin.core(ns, "services", "coco-tensorboard"))) is not None
          and s["metadata"]["uid"] == theirs["metadata"]["uid"], 2)


def test_a_tenants_service_with_a_workers_name_stops_the_stage_until_it_is_gone(admin: Api, ns: str,
                                                                                operator: OperatorProcess) -> None:
    _claims(admin, ns)
    theirs = _tenants_service(admin, ns, "coco-stage1")
    admin.new_training(ns, "coco", PVC | {"numNodes": 2})
    ready = _ready(admin, ns, "ServiceNotOwned")
    assert "Service coco-stage1" in ready["message"]
    assert admin.status(ns, "coco")["phase"] == "Pending"
    still(lambda: admin.job(ns, "coco-stage1") is None and admin.get(admin.core(ns, "services", "coco-stage1"))[
        "metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"], 3)
    # Nothing about Services is watched: the retry with backoff finds the name free once the tenant deletes theirs.
    admin.delete(admin.core(ns, "services", "coco-stage1"))
    wait_for(lambda: admin.job(ns, "coco-stage1"), timeout=90, what="the stage 1 Job")
    service = admin.get(admin.core(ns, "services", "coco-stage1"))
    assert service is not None and service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["ownerReferences"][0]["uid"] == admin.training(ns, "coco")["metadata"]["uid"]
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")


def _quota(admin: Api, ns: str, hard: dict[str, str]) -> str:
    """A ResourceQuota that refuses more objects of a kind (403 "exceeded quota"), once its controller counted."""
    path = admin.core(ns, "resourcequotas", "no-more")
    admin.create(admin.core(ns, "resourcequotas"), {"apiVersion": "v1", "kind": "ResourceQuota",
                                                    "metadata": {"name": "no-more"}, "spec": {"hard": hard}})
    wait_for(lambda: ((admin.get(path) or {}).get("status") or {}).get("used") is not None, timeout=60,
             what="the quota counted")
    return path


@pytest.mark.parametrize(("hard", "spec", "reason", "field", "child"), [
    ({"count/jobs.batch": "0"}, PVC, "JobForbidden", "spec", ("jobs", "coco-stage1")),
    ({"services": "0"}, PVC | {"numNodes": 2}, "ServiceForbidden", "spec.numNodes", ("services", "coco-stage1")),
    ({"count/networkpolicies.networking.k8s.io": "0"}, PVC | {"numNodes": 2}, "NetworkPolicyForbidden",
     "spec.numNodes", ("networkpolicies", "coco-stage1")),
    ({"count/deployments.apps": "0"}, TENSORBOARD, "DeploymentForbidden", "spec.tensorboard",
     ("deployments", "coco-tensorboard")),
    ({"services": "0"}, TENSORBOARD, "ServiceForbidden", "spec.tensorboard", ("services", "coco-tensorboard")),
    ({"count/deployments.apps": "0"}, PVC, "DeploymentForbidden", "spec.evaluation",
     ("deployments", "coco-evaluation")),
], ids=["stage-job", "workers-service", "workers-network-policy", "tensorboard-deployment", "tensorboard-service",
        "evaluation-deployment"])
def test_a_child_the_api_server_refuses_is_in_status_then_made(admin: Api, ns: str, operator: OperatorProcess,
                                                              hard: dict[str, str], spec: dict[str, Any],
                                                              reason: str, field: str, child: tuple[str, str]) -> None:
    _claims(admin, ns)
    quota = _quota(admin, ns, hard)
    admin.new_training(ns, "coco", spec)
    if field == "spec.evaluation":  # made once the trainer runs (evaluation.due)
        wait_for(lambda: admin.run_pods(ns, "coco-stage1"), what="stage 1's pod running")
    ready = _ready(admin, ns, reason)
    assert ready["status"] == "False" and ready["observedGeneration"] == 1
    assert ready["message"].startswith(f"{field}: the API server did not take "), ready["message"]
    assert "HTTP 403 Forbidden" in ready["message"] and "exceeded quota: no-more" in ready["message"]
    wait_for(lambda: reason in admin.event_reasons(ns, "coco"), what=f"a {reason} Event")  # posted after status
    admin.delete(quota)
    plural, name = child
    path = {"deployments": DEPLOYMENTS.format(ns=ns) + f"/{name}", "jobs": admin.jobs(ns, name),
            "networkpolicies": f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}"}.get(
        plural, admin.core(ns, plural, name))
    # Retried with backoff (at most 60 s apart), the write goes through by itself.
    wait_for(lambda: admin.get(path), timeout=150, what=f"{plural}/{name} once the quota is gone",
             on_timeout=lambda: str(admin.status(ns, "coco")) + operator.log[-2000:])
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again",
             on_timeout=lambda: str(admin.status(ns, "coco")) + operator.log[-2000:])
    assert admin.status(ns, "coco")["phase"] == "Running"


def test_an_export_job_the_api_server_refuses_is_in_status_then_made(admin: Api, ns: str,
                                                                    operator: OperatorProcess) -> None:
    _claims(admin, ns)
    admin.new_training(ns, "coco", PVC)
    wait_for(lambda: admin.pods(ns, "coco-stage1"), timeout=60, what="stage 1's pod")
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: admin.pods(ns, "coco-stage2"), timeout=60, what="stage 2's pod")
    quota = _quota(admin, ns, {"count/jobs.batch": "2"})  # the two stages' Jobs, no third
    admin.finish_pods(ns, "coco-stage2")
    ready = _ready(admin, ns, "JobForbidden")
    assert ready["message"].startswith("spec.export: the API server did not take Job coco-export"), ready["message"]
    assert admin.status(ns, "coco")["phase"] == "Succeeded"  # the training's stages are done all the same
    admin.delete(quota)
    wait_for(lambda: admin.job(ns, "coco-export"), timeout=90, what="the export Job once the quota is gone")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")
