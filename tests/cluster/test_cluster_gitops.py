"""What Argo CD, Flux and kstatus say of a training in every state, on the real API server and Job controller.

The operator drives trainings through their states; each state's object, as the API server serves it, is rated by
the tools' own code (tools/gitops-health: kstatus status.Compute, Flux's CEL StatusEvaluator with the shipped
healthCheckExprs, Argo CD's Lua sandbox with the shipped script). Expected (docs/gitops.md):

| state                                              | kstatus    | Flux (shipped) | Argo CD     |
|----------------------------------------------------|------------|----------------|-------------|
| starting, training, retrying, advancing, resuming  | InProgress | Current        | Progressing |
| queued for Kueue (test_cluster_kueue.py)           | InProgress | Current        | Progressing |
| spec edited, not yet observed                      | InProgress | InProgress     | Progressing |
| Succeeded                                          | Current    | Current        | Healthy     |
| Suspended                                          | Current    | Current        | Suspended   |
| Failed, missing Secret/claim, rejected, bad image  | Failed     | Failed         | Degraded    |
| restarted with the Secret still missing            | Failed     | Failed         | Degraded    |
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, reserved_pool_denied, wait_for
from gitops_support import Rating, rate

# 600: run on its own (not through make test), the first rating builds tools/gitops-health (minutes, cold).
pytestmark = pytest.mark.timeout(600)

PVC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                       "stage2NumberOfSteps": 300, "gpus": 0}
UFILE: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                         "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                         "gpus": 0}
MOVING = ("InProgress", "Current", "Progressing")
BLOCKED = ("Failed", "Failed", "Degraded")
POLICY = "im2txt-test-gitops-no-reserved-pool"


def rated(admin: Api, ns: str, name: str) -> Rating:
    (r,) = rate([admin.training(ns, name)])
    return r


def reconciling(admin: Api, ns: str, name: str, *reasons: str) -> dict[str, Any]:
    return wait_for(lambda: (c := admin.condition(ns, name, "Reconciling")).get("status") == "True"
                    and c.get("reason") in reasons and c, timeout=60, what=f"Reconciling {reasons}",
                    on_timeout=lambda: str(admin.status(ns, name)))


def stalled(admin: Api, ns: str, name: str, reason: str) -> dict[str, Any]:
    return wait_for(lambda: (c := admin.condition(ns, name, "Stalled")).get("status") == "True"
                    and c.get("reason") == reason and c, timeout=60, what=f"Stalled {reason}",
                    on_timeout=lambda: str(admin.status(ns, name)))


def live_pods(admin: Api, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in admin.pods(ns, job) if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


def make_ready(admin: Api, ns: str, pod: dict[str, Any]) -> None:
    """The kubelet's part for a pod whose containers run and are ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    admin.merge_patch(admin.core(ns, "pods", pod["metadata"]["name"]) + "/status", {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True,
                               "restartCount": 0, "state": {"running": {"startedAt": now}}}
                              for c in pod["spec"]["containers"]]}})


def history(admin: Api, ns: str, name: str, since: str, seconds: int = 2) -> list[dict[str, Any]]:
    """Every version of the training the API server stored after resourceVersion ``since``: a watch from there
    (a status that flapped and came back is in it, whatever a poll would have seen)."""
    resp = admin.session.get(admin.base + admin.trainings(ns), verify=admin.ca, timeout=seconds + 30, params={
        "watch": "1", "resourceVersion": since, "fieldSelector": f"metadata.name={name}",
        "timeoutSeconds": str(seconds)})
    resp.raise_for_status()
    return [e["object"] for e in map(json.loads, resp.text.splitlines()) if e["type"] == "MODIFIED"]


def claims(admin: Api, ns: str) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)


def test_a_training_through_its_life(admin: Api, ns: str, operator: OperatorProcess) -> None:
    claims(admin, ns)
    admin.new_training(ns, "coco", {**PVC, "backoffLimit": 2})
    # Queued / starting: the Job exists, its pod is not ready.
    reconciling(admin, ns, "coco", "Starting")
    r = rated(admin, ns, "coco")
    assert r.statuses == MOVING, r
    assert r.kstatus.message.startswith("stage 1: Job coco-stage1 trains to global step 100 (")
    assert r.argocd.message.startswith("stage 1: Job coco-stage1 trains to global step 100 (")
    # Training: a ready pod.
    make_ready(admin, ns, wait_for(lambda: live_pods(admin, ns, "coco-stage1"), timeout=60, what="pod")[0])
    reconciling(admin, ns, "coco", "Training")
    r = rated(admin, ns, "coco")
    assert r.statuses == MOVING and r.argocd.message.startswith("stage 1: Job coco-stage1 trains"), r
    assert admin.condition(ns, "coco", "Ready")["status"] == "True"
    # Retrying: the pod failed, the Job runs another.
    admin.finish_pods(ns, "coco-stage1", "Failed")
    c = reconciling(admin, ns, "coco", "Retrying")
    assert c["message"].endswith("(retrying after 1 failed pod)")
    r = rated(admin, ns, "coco")
    assert r.statuses == MOVING and r.argocd.message == c["message"], r
    # A spec edit the operator has not seen yet (it is stopped): every tool waits for it.
    operator.stop()
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"stage2NumberOfSteps": 400}})
    r = rated(admin, ns, "coco")
    assert r.statuses == ("InProgress", "InProgress", "Progressing"), r
    assert r.kstatus.message == "Im2txtTraining generation is 2, but latest observed generation is 1"
    assert r.argocd.message == "Waiting for the im2txt operator to observe generation 2"
    operator.start()
    wait_for(lambda: admin.status(ns, "coco").get("observedGeneration") == 2, what="generation 2 observed")
    assert rated(admin, ns, "coco").statuses == MOVING
    # Advancing: stage 1 done, stage 2 created (then starting).
    wait_for(lambda: live_pods(admin, ns, "coco-stage1"), timeout=60, what="the retry's pod")
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: admin.status(ns, "coco").get("stage") == 2, what="stage 2")
    reconciling(admin, ns, "coco", "Advancing", "Starting")
    r = rated(admin, ns, "coco")
    assert r.statuses == MOVING and r.argocd.message.startswith("stage 2: Job coco-stage2 trains to global step 400"), r
    # Succeeded.
    wait_for(lambda: live_pods(admin, ns, "coco-stage2"), timeout=60, what="stage-2 pod")
    admin.finish_pods(ns, "coco-stage2")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", what="Succeeded")
    r = rated(admin, ns, "coco")
    assert r.statuses == ("Current", "Current", "Healthy"), r
    assert r.argocd.message == "stage 2 succeeded: the model reached global step 400"
    assert admin.condition(ns, "coco", "Reconciling")["status"] == "False"
    assert admin.condition(ns, "coco", "Stalled")["status"] == "False"


def test_suspended_failed_and_blocked_trainings(admin: Api, ns: str, operator: OperatorProcess) -> None:
    claims(admin, ns)
    admin.new_training(ns, "paused", {**PVC, "suspend": True, "outputPath": "pvc://runs/paused/"})  # not broken's
    admin.new_training(ns, "broken", {**PVC, "backoffLimit": 0})
    admin.new_training(ns, "nosecret", UFILE)  # no Secret ufile-keys in this namespace
    admin.new_training(ns, "noclaim", {**PVC, "dataPath": "pvc://nowhere/mscoco/"})

    wait_for(lambda: admin.status(ns, "paused").get("phase") == "Suspended", what="Suspended")
    r = rated(admin, ns, "paused")
    assert r.statuses == ("Current", "Current", "Suspended"), r

    wait_for(lambda: live_pods(admin, ns, "broken-stage1"), timeout=60, what="the pod of broken")
    admin.finish_pods(ns, "broken-stage1", "Failed")
    c = stalled(admin, ns, "broken", "BackoffLimitExceeded")
    r = rated(admin, ns, "broken")
    assert r.statuses == BLOCKED, r
    assert r.kstatus.message == r.argocd.message == c["message"] == admin.status(ns, "broken")["message"]
    assert admin.condition(ns, "broken", "Ready")["status"] == "False"  # never Ready on a Failed training

    pod = wait_for(lambda: live_pods(admin, ns, "nosecret-stage1"), timeout=60, what="the stage-1 pod")[0]
    admin.config_error(ns, pod, 'secret "ufile-keys" not found')
    c = stalled(admin, ns, "nosecret", "SecretNotFound")
    r = rated(admin, ns, "nosecret")
    assert r.statuses == BLOCKED, r
    assert r.kstatus.message == r.argocd.message == c["message"]
    assert c["message"].startswith(f"spec.credentialsSecret: Secret 'ufile-keys' not found in namespace '{ns}'")

    c = stalled(admin, ns, "noclaim", "ClaimNotFound")
    r = rated(admin, ns, "noclaim")
    assert r.statuses == BLOCKED, r
    assert r.argocd.message == c["message"] and c["message"].startswith("spec.dataPath: ")
    assert admin.job(ns, "noclaim-stage1") is None


@pytest.fixture
def no_reserved_pool(admin: Api, ns: str) -> Iterator[None]:
    """A cluster admin's policy refuses Jobs of ``ns`` that select pool=reserved (422, as the API answers)."""
    with reserved_pool_denied(admin, ns, POLICY, operations=("CREATE",)):
        yield


def test_a_job_the_api_refuses(admin: Api, ns: str, no_reserved_pool: None, operator: OperatorProcess) -> None:
    claims(admin, ns)
    admin.new_training(ns, "coco", {**PVC, "nodeSelector": {"pool": "reserved"}})
    c = stalled(admin, ns, "coco", "JobRejected")
    r = rated(admin, ns, "coco")
    assert r.statuses == BLOCKED, r
    assert r.argocd.message == r.kstatus.message == c["message"]
    assert "the reserved pool is for the platform team" in c["message"]
    # Fixing the spec: moving again, for every tool.
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"nodeSelector": None}})
    reconciling(admin, ns, "coco", "Starting")
    wait_for(lambda: admin.status(ns, "coco").get("observedGeneration") == 2, what="generation 2 observed")
    assert rated(admin, ns, "coco").statuses == MOVING


def test_a_restart_with_the_secret_still_missing_never_reads_healthy(admin: Api, ns: str,
                                                                    scoped: Callable[..., OperatorProcess]) -> None:
    """Issue 24.4: the pod's problem lives in the cluster, so a restarted operator reads the pod before it writes
    status; no version of the training the API server stores in between says the problem is fixed."""
    operator = scoped()  # this namespace alone: its reconcile count is about this training only
    admin.new_training(ns, "coco", UFILE)  # no Secret ufile-keys in this namespace
    pod = wait_for(lambda: live_pods(admin, ns, "coco-stage1"), timeout=60, what="the stage-1 pod")[0]
    admin.config_error(ns, pod, 'secret "ufile-keys" not found')
    blocked = stalled(admin, ns, "coco", "SecretNotFound")
    since = admin.training(ns, "coco")["metadata"]["resourceVersion"]
    operator = scoped()  # the first one SIGKILLed
    # A positive signal first: the new operator reconciled the training, and its poller looked at it since.
    operator.reconciled(1)
    time.sleep(3 * operator.interval)
    versions = history(admin, ns, "coco", since)
    for version in [*versions, admin.training(ns, "coco")]:
        conds = {c["type"]: c for c in version["status"]["conditions"]}
        assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "SecretNotFound"), version["status"]
        assert conds["Stalled"] == blocked and version["status"]["phase"] == "Pending", version["status"]
    for r in rate([admin.training(ns, "coco"), *versions]):
        assert r.statuses == BLOCKED and r.argocd.message == blocked["message"], r
    assert "SpecValid" not in admin.event_reasons(ns, "coco")
    # Once the Secret is there (the kubelet starts the container), the next poll says so: moving again.
    admin.config_error(ns, pod, None)
    reconciling(admin, ns, "coco", "Starting")
    assert admin.condition(ns, "coco", "Ready")["status"] == "True"
    assert rated(admin, ns, "coco").statuses == MOVING


def test_a_bad_image_then_suspend_and_resume(admin: Api, ns: str, operator: OperatorProcess) -> None:
    claims(admin, ns)
    admin.new_training(ns, "coco", PVC)
    pod = wait_for(lambda: live_pods(admin, ns, "coco-stage1"), timeout=60, what="the stage-1 pod")[0]
    # The kubelet's part: the node cannot pull the image.
    c = (pod["spec"].get("initContainers") or pod["spec"]["containers"])[0]
    key = "initContainerStatuses" if pod["spec"].get("initContainers") else "containerStatuses"
    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c["image"]}"'}
    statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"waiting": waiting}}]
    admin.merge_patch(admin.core(ns, "pods", pod["metadata"]["name"]) + "/status",
                      {"status": {"phase": "Pending", key: statuses}})
    blocked = stalled(admin, ns, "coco", "ImagePullFailed")
    r = rated(admin, ns, "coco")
    assert r.statuses == BLOCKED and r.argocd.message == r.kstatus.message == blocked["message"], r
    assert blocked["message"].startswith(f"spec.image: the node cannot pull image '{c['image']}'"), blocked
    # The registry is reachable again: the pod runs, the training moves on.
    if key == "initContainerStatuses":
        admin.config_error(ns, pod, None)  # its first init container runs
    make_ready(admin, ns, admin.pods(ns, "coco-stage1")[0])
    reconciling(admin, ns, "coco", "Training")
    assert rated(admin, ns, "coco").statuses == MOVING
    # Suspended by the user, then resumed: its Job is made again.
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"suspend": True}})
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Suspended" and admin.job(ns, "coco-stage1") is None,
             what="Suspended, its Job gone")
    assert rated(admin, ns, "coco").statuses == ("Current", "Current", "Suspended")
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"suspend": False}})
    c = reconciling(admin, ns, "coco", "Resuming", "Starting")  # Starting once the poller looked at its pods
    r = rated(admin, ns, "coco")
    assert r.statuses == MOVING and r.argocd.message.startswith("stage 1: Job coco-stage1 trains to global step 100"), r
    assert "Resumed" in admin.event_reasons(ns, "coco")
