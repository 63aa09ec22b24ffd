"""The evaluation beside a training on a real API server: spec.evaluation's defaults, its Deployment's pod admitted
under `restricted`, a crash-looping evaluator as the EvaluationFailed condition while the stage runs on, disabling,
garbage collection."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, still, wait_for

pytestmark = pytest.mark.timeout(240)

DEPLOYMENT = "/apis/apps/v1/namespaces/{ns}/deployments/coco-evaluation"
SPEC: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                        "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                        "gpus": 0}
SELECTOR = "app.kubernetes.io/component=evaluation"
MISSING = "trainer: --input_file_pattern: no files match '/data/data/val-?????-of-00004'"


def test_the_server_defaults_spec_evaluation_to_on(admin: Api, ns: str) -> None:
    created = admin.new_training(ns, "coco", SPEC)
    assert created["spec"]["evaluation"] == {"enabled": True, "filePattern": "val-?????-of-00004",
                                             "intervalSeconds": 600, "numExamples": 10132, "bleu": False,
                                             "bleuImages": 500}


def _crash_loop(admin: Api, ns: str, pod: dict[str, Any]) -> None:
    """The kubelet's part for an evaluator that exits 1 and waits to be restarted (its sidecars run)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    init = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "restartCount": 0,
             "started": True, "state": {"running": {"startedAt": now}}} for c in pod["spec"]["initContainers"]]
    evaluator = {"name": "evaluator", "image": pod["spec"]["containers"][0]["image"], "imageID": "", "ready": False,
                 "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": MISSING,
                                              "startedAt": now, "finishedAt": now}}}
    admin.merge_patch(admin.core(ns, "pods", pod["metadata"]["name"]) + "/status", {"status": {
        "phase": "Running", "initContainerStatuses": init, "containerStatuses": [evaluator]}})


def test_evaluation_runs_restricted_fails_as_a_condition_and_goes_with_its_training(
        admin: Api, ns: str, operator: OperatorProcess) -> None:
    admin.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    training = admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.pods(ns, "coco-stage1"), what="stage 1's pod")
    still(lambda: admin.get(DEPLOYMENT.format(ns=ns)) is None, 2)  # nothing to evaluate before the trainer runs
    admin.run_pods(ns, "coco-stage1")
    deployment = wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)), what="the evaluation Deployment")
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == training["metadata"]["uid"]
    assert wait_for(lambda: (admin.status(ns, "coco").get("evaluation") or {}).get("generation"),
                    what="status.evaluation.generation") == 1
    # The Deployment and ReplicaSet controllers make its pod, and the restricted namespace admits it.
    pods = wait_for(lambda: admin.request("GET", admin.core(ns, "pods"), params={"labelSelector": SELECTOR})["items"],
                    timeout=60, what="the evaluation pod", on_timeout=lambda: str(
                        [e.get("message") for e in admin.request("GET", admin.core(ns, "events"))["items"]]))
    pod = pods[0]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["validation-data", "checkpoints", "sync"]
    assert "nodeSelector" not in pod["spec"] and pod["spec"]["containers"][0]["name"] == "evaluator"
    # A broken evaluation: a condition names it, an Event says it once, and the stage is left as it was.
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="stage 1's Job")
    _crash_loop(admin, ns, pod)
    failed = wait_for(lambda: next((c for c in admin.status(ns, "coco").get("conditions") or ()
                                    if c["type"] == "EvaluationFailed" and c["status"] == "True"), None),
                      what="EvaluationFailed", on_timeout=lambda: operator.log[-3000:])
    assert MISSING in failed["message"] and "container evaluator: CrashLoopBackOff" in failed["message"]
    wait_for(lambda: "EvaluationFailed" in admin.event_reasons(ns, "coco"), what="the EvaluationFailed Event")
    status = admin.status(ns, "coco")
    assert status["phase"] == "Running" and admin.job(ns, "coco-stage1") is not None
    assert not (admin.job(ns, "coco-stage1") or {}).get("status", {}).get("failed")
    # Deleting the training deletes its evaluation (garbage collection; the operator deletes nothing).
    admin.delete(admin.trainings(ns, "coco"))
    wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)) is None, timeout=60, what="the evaluation garbage-collected")


def test_disabling_the_evaluation_removes_its_deployment(admin: Api, ns: str, operator: OperatorProcess) -> None:
    admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.run_pods(ns, "coco-stage1"), what="stage 1's pod running")
    wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)), what="the Deployment")
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"evaluation": {"enabled": False}}})
    wait_for(lambda: admin.get(DEPLOYMENT.format(ns=ns)) is None, what="the evaluation deleted")
    wait_for(lambda: "generation" not in (admin.status(ns, "coco").get("evaluation") or {}),
             what="status.evaluation.generation removed")
    refused = [line for line in operator.log.splitlines() if "cannot" in line and "forbidden: User" in line]
    assert not refused, refused
