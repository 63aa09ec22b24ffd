"""A stage whose pods do not start, on a real API server (issue 18.8): a pod no node fits, and pods the Job
controller cannot create, are in status with the scheduler's or the controller's own words, until they start.

No scheduler runs in this tier: the test writes the PodScheduled condition the way kube-scheduler does. The Job
controller is the real one, and so are its FailedCreate Events."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, wait_for

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 1}
SCHEDULER = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: " \
            "3 No preemption victims found for incoming pod."


def _claims(admin: Api, ns: str) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)


def _ready(admin: Api, ns: str, reason: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("reason") == reason and c,
                    timeout=timeout, what=f"Ready {reason}", on_timeout=lambda: str(admin.status(ns, "coco")))


def _scheduled(admin: Api, ns: str, pod: str, status: str, reason: str, message: str) -> None:
    admin.request("PATCH", admin.core(ns, "pods", pod) + "/status", {"status": {"conditions": [
        {"type": "PodScheduled", "status": status, "reason": reason, "message": message}]}},
        content_type="application/merge-patch+json")


def test_a_pod_no_node_fits_is_in_status_in_the_schedulers_words(admin: Api, ns: str,
                                                                 operator: OperatorProcess) -> None:
    _claims(admin, ns)
    admin.new_training(ns, "coco", SPEC)
    (pod,) = wait_for(lambda: admin.pods(ns, "coco-stage1"), timeout=60, what="the stage 1 pod")
    _scheduled(admin, ns, pod["metadata"]["name"], "False", "Unschedulable", SCHEDULER)
    ready = _ready(admin, ns, "Unschedulable")
    assert ready["status"] == "False"
    assert ready["message"] == f"spec.gpus: no node can run pod {pod['metadata']['name']}; the scheduler says: " \
                               f"{SCHEDULER}"
    assert admin.status(ns, "coco")["phase"] == "Pending"
    wait_for(lambda: "Unschedulable" in admin.event_reasons(ns, "coco"), what="the Event")  # posted after status
    # A node frees up (or the autoscaler adds one): the scheduler binds the pod, and the training runs again.
    _scheduled(admin, ns, pod["metadata"]["name"], "True", "", "")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")
    assert admin.status(ns, "coco")["phase"] == "Running"


def test_pods_the_job_controller_cannot_create_are_in_status_in_its_words(admin: Api, ns: str,
                                                                         operator: OperatorProcess) -> None:
    _claims(admin, ns)
    quota = admin.core(ns, "resourcequotas", "no-pods")
    admin.create(admin.core(ns, "resourcequotas"), {"apiVersion": "v1", "kind": "ResourceQuota",
                                                    "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    wait_for(lambda: ((admin.get(quota) or {}).get("status") or {}).get("used") is not None, timeout=60,
             what="the quota counted")
    admin.new_training(ns, "coco", SPEC)
    ready = _ready(admin, ns, "PodCreateFailed", timeout=60)
    assert ready["message"].startswith("spec: the Job controller cannot create the pods of Job coco-stage1: "), \
        ready["message"]
    assert "exceeded quota: no-pods" in ready["message"]
    assert admin.pods(ns, "coco-stage1") == [] and admin.status(ns, "coco")["phase"] == "Pending"
    admin.delete(quota)
    wait_for(lambda: admin.pods(ns, "coco-stage1"), timeout=120, what="the pod once the quota is gone")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")
