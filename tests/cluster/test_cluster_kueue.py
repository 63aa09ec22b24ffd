"""Under a real Kueue (v0.17, built from its Go module; kueue_support.py): a ClusterQueue of 1 GPU, trainings of 1 GPU
each. Kueue owns each stage Job's spec.suspend: a queued stage waits suspended with no pod and says so with Kueue's
reason, eviction and the user's suspend hold without a fight, and every training still succeeds.

A control plane of its own (Kueue's webhooks see every Job created on it); the project installed as on the
session's; the kubelet's part played by the tests (admin.finish_pods). Each scenario prints the Job updates and
pods it counted (pytest -s shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import (
    CRD_NAME,
    Api,
    OperatorProcess,
    apply_base,
    operator_kubeconfig_of,
    still,
    wait_for,
)
from control_plane import ControlPlane, find_assets
from gitops_support import rate
from kueue_support import Kueue, Watch, admitted, build, cluster_queue, queues, workload_condition, workloads

pytestmark = pytest.mark.timeout(300)

MAX_UPDATES = 5  # Job updates a waiting, evicted or suspended stage may cost (the bound)
# A queued stage is on its way (docs/gitops.md): kstatus, Flux (shipped expressions), Argo CD.
QUEUED = ("InProgress", "Current", "Progressing")


def rated_queued(admin: Api, ns: str, name: str) -> None:
    """The training as the API server serves it, rated by the real evaluators: on its way, with Kueue's words."""
    (r,) = rate([admin.training(ns, name)])
    assert r.statuses == QUEUED, r
    assert r.kstatus.message == r.argocd.message == admin.status(ns, name)["message"], r


@pytest.fixture(scope="module")
def kueue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    folder = build()
    plane = ControlPlane(find_assets(), tmp_path_factory.mktemp("envtest-kueue"))
    manager: Kueue | None = None
    try:
        plane.start()
        apply_base(plane)
        plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        manager = Kueue(folder, plane, plane.workdir / "kueue").start()
        yield manager
    finally:
        if manager is not None:
            manager.stop()
        plane.stop()


# The conftest's ns and operator fixtures run on this module's control plane through these three.
@pytest.fixture(scope="module")
def installed(kueue: Kueue) -> ControlPlane:
    return kueue.plane


@pytest.fixture(scope="module")
def admin(installed: ControlPlane) -> Api:
    return Api(installed)


@pytest.fixture(scope="module")
def operator_kubeconfig(installed: ControlPlane) -> Path:
    """A kubeconfig with a token of the operator's own ServiceAccount: exactly manifests/base/rbac.yaml."""
    return operator_kubeconfig_of(installed)


@pytest.fixture(autouse=True)
def kueue_log_on_failure(kueue: Kueue, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if getattr(request.node, "report_call", None) is not None and request.node.report_call.failed:
        print(f"--- kueue log ---\n{kueue.log[-6000:]}")


def spec(admin: Api, ns: str, name: str, **changes: Any) -> dict[str, Any]:
    """A 1-GPU training in LocalQueue gpu-queue with an output folder of its own; the claims made once per ns."""
    for claim in ("coco-data", "runs"):
        if admin.get(admin.core(ns, "persistentvolumeclaims", claim)) is None:
            admin.claim(ns, claim)
    return {"dataPath": "pvc://coco-data/mscoco/", "outputPath": f"pvc://runs/{name}/", "numberOfSteps": 100,
            "stage2NumberOfSteps": 300, "gpus": 1, "export": False, "queueName": "gpu-queue", **changes}


def live_pods(admin: Api, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in admin.pods(ns, job) if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


def workload(admin: Api, ns: str, job_name: str) -> dict[str, Any] | None:
    job = admin.job(ns, job_name)
    found = workloads(admin, ns, job) if job else []
    return found[0] if len(found) == 1 else None


def suspend_managers(job: dict[str, Any]) -> set[str]:
    """The field managers that own the Job's spec.suspend."""
    return {m["manager"] for m in job["metadata"].get("managedFields") or ()
            if "f:suspend" in (m.get("fieldsV1") or {}).get("f:spec", {})}


def report(what: str, watch: Watch, *jobs: str, since: tuple[int, int, list[bool]] | None = None) -> None:
    for job in jobs:
        updates, pods, flips = watch.counts(job)
        delta = f" ({updates - since[0]} updates, {pods - since[1]} pods since it began)" if since else ""
        print(f"[kueue] {what}: Job {job}: {updates} updates, {pods} pods, spec.suspend {flips}{delta}")


def test_a_queued_training_waits_suspended_and_both_succeed(admin: Api, ns: str, operator: OperatorProcess,
                                                            installed: ControlPlane) -> None:
    queues(admin, ns, gpus=1)
    with Watch(admin, ns) as watch:
        admin.new_training(ns, "first", spec(admin, ns, "first"))
        wait_for(lambda: live_pods(admin, ns, "first-stage1"), timeout=60, what="first's pod (admitted)")
        admin.new_training(ns, "second", spec(admin, ns, "second"))
        wait_for(lambda: (w := workload(admin, ns, "second-stage1")) and
                 workload_condition(w, "QuotaReserved").get("reason") == "Pending", what="second's Workload pending")
        wait_for(lambda: admin.status(ns, "second").get("phase") == "Queued", what="second Queued")
        # It waits: suspended, no pod, a handful of updates (its creation's, the Job controller's Suspended).
        still(lambda: not admin.pods(ns, "second-stage1") and admin.job(ns, "second-stage1")["spec"]["suspend"], 5)
        updates, pods, flips = watch.counts("second-stage1")
        report("waiting", watch, "second-stage1")
        assert (pods, flips) == (0, [True]) and updates <= MAX_UPDATES
        status = admin.status(ns, "second")
        assert status["message"].startswith("stage 1 waits for Kueue admission in LocalQueue gpu-queue: ")
        assert "insufficient unused quota for nvidia.com/gpu" in status["message"]
        queued = admin.condition(ns, "second", "Queued")
        assert (queued["status"], queued["reason"]) == ("True", "Pending")
        assert status.get("eta") is None
        wide = installed.kubectl("get", "im2txttraining", "second", "-n", ns, "-o", "wide").stdout
        assert "Queued" in wide and "insufficient unused quota for nvidia.com/gpu" in wide, wide
        assert admin.condition(ns, "second", "Reconciling")["reason"] == "Queued"
        rated_queued(admin, ns, "second")
        # A restarted operator finds the held Job and leaves it held.
        operator.stop()
        operator.start()
        # A positive signal first: the new process reconciled both trainings (this module's control plane has no
        # others when this, its first test, runs), so "left held" is about a look, not about no look yet.
        operator.reconciled(2)
        still(lambda: watch.counts("second-stage1") == (updates, 0, [True]), 5)

        # The kubelet's part: whatever Kueue admitted runs to its end, until both trainings succeeded. Never
        # more than one stage holds the GPU.
        def step() -> bool:
            running = [j for j in admin.job_names(ns) if not admin.job(ns, j)["spec"].get("suspend")
                       and live_pods(admin, ns, j)]
            assert len(running) <= 1, running
            for job in running:
                admin.finish_pods(ns, job)
            return all(admin.status(ns, t).get("phase") == "Succeeded" for t in ("first", "second"))

        wait_for(step, timeout=180, what="both trainings Succeeded")
        jobs = [f"{t}-stage{s}" for t in ("first", "second") for s in (1, 2)]
        report("to the end", watch, *jobs)
        # StrictFIFO: each stage 2 is a new Workload at the back of the queue, behind the other training's stage.
        assert watch.started == ["first-stage1", "second-stage1", "first-stage2", "second-stage2"], watch.started
        for job in jobs:  # admitted once each: created suspended, unsuspended once by Kueue, one pod
            updates, pods, flips = watch.counts(job)
            assert (pods, flips) == (1, [True, False]), (job, pods, flips)
            # managedFields: whoever last changed spec.suspend owns it; the operator (its one field manager) set it
            # only at the create, so Kueue took it over when it admitted the Job.
            assert suspend_managers(admin.job(ns, job)) == {"kueue"}, admin.job(ns, job)["metadata"]["managedFields"]
    assert "Queued" in admin.event_reasons(ns, "second")


def test_eviction_holds_and_the_stage_resumes_when_readmitted(admin: Api, ns: str, operator: OperatorProcess) -> None:
    queues(admin, ns, gpus=1)
    with Watch(admin, ns) as watch:
        admin.new_training(ns, "coco", spec(admin, ns, "coco"))
        wait_for(lambda: live_pods(admin, ns, "coco-stage1"), timeout=60, what="the pod (admitted)")
        wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running")
        before = watch.counts("coco-stage1")
        wl = workload(admin, ns, "coco-stage1")
        assert wl is not None
        admin.merge_patch(f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{ns}/workloads/{wl['metadata']['name']}",
                          {"spec": {"active": False}})
        wait_for(lambda: admin.status(ns, "coco").get("phase") == "Queued", what="the training says evicted")
        status = admin.status(ns, "coco")
        assert status["message"].startswith("stage 1 was evicted by Kueue (Deactivated: "), status["message"]
        assert admin.condition(ns, "coco", "Queued")["reason"] == "Deactivated"
        rated_queued(admin, ns, "coco")
        still(lambda: admin.job(ns, "coco-stage1")["spec"]["suspend"] and not live_pods(admin, ns, "coco-stage1"), 5)
        assert cluster_queue(admin, ns).get("status", {}).get("admittedWorkloads", 0) == 0
        updates, pods, flips = watch.counts("coco-stage1")
        report("evicted", watch, "coco-stage1", since=before)
        assert updates - before[0] <= MAX_UPDATES and pods == before[1] and flips == [True, False, True]
        admin.merge_patch(f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{ns}/workloads/{wl['metadata']['name']}",
                          {"spec": {"active": True}})
        wait_for(lambda: live_pods(admin, ns, "coco-stage1"), timeout=60, what="a pod again (readmitted)")
        wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running again")
        for stage in (1, 2):
            wait_for(lambda s=stage: live_pods(admin, ns, f"coco-stage{s}"), timeout=60, what=f"stage {stage} pod")
            admin.finish_pods(ns, f"coco-stage{stage}")
        wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", timeout=60, what="Succeeded")
        report("readmitted", watch, "coco-stage1", "coco-stage2")
    assert "Evicted" in admin.event_reasons(ns, "coco")


def test_suspend_before_and_after_admission(admin: Api, ns: str, operator: OperatorProcess) -> None:
    queues(admin, ns, gpus=1)
    training = admin.trainings
    with Watch(admin, ns) as watch:
        admin.new_training(ns, "first", spec(admin, ns, "first"))
        wait_for(lambda: live_pods(admin, ns, "first-stage1"), timeout=60, what="first admitted")
        admin.new_training(ns, "second", spec(admin, ns, "second"))
        wait_for(lambda: admin.status(ns, "second").get("phase") == "Queued", what="second Queued")
        # Before admission: the waiting stage is withdrawn (its Job and Workload go), nothing runs.
        admin.merge_patch(training(ns, "second"), {"spec": {"suspend": True}})
        wait_for(lambda: admin.status(ns, "second").get("phase") == "Suspended", what="second Suspended")
        wait_for(lambda: admin.job(ns, "second-stage1") is None and len(workloads(admin, ns)) == 1, timeout=30,
                 what="second's Job and Workload gone")
        report("suspended while waiting", watch, "second-stage1")
        updates, pods, _ = watch.counts("second-stage1")
        assert pods == 0 and updates <= MAX_UPDATES
        # After admission: the running stage stops, its quota is released at once.
        before = watch.counts("first-stage1")
        admin.merge_patch(training(ns, "first"), {"spec": {"suspend": True}})
        wait_for(lambda: admin.status(ns, "first").get("phase") == "Suspended", what="first Suspended")
        wait_for(lambda: admin.job(ns, "first-stage1") is None, timeout=30, what="first's Job gone")
        wait_for(lambda: cluster_queue(admin, ns).get("status", {}).get("reservingWorkloads", 1) == 0,
                 what="the quota released")
        still(lambda: admin.status(ns, "first").get("phase") == "Suspended"
              and not live_pods(admin, ns, "first-stage1"), 3)
        updates, pods, _ = watch.counts("first-stage1")
        report("suspended while admitted", watch, "first-stage1", since=before)
        assert updates - before[0] <= MAX_UPDATES and pods == before[1] == 1
        # Resume both: each stage is a new Workload in the queue, and each training succeeds.
        for name in ("first", "second"):
            admin.merge_patch(training(ns, name), {"spec": {"suspend": False}})

        def step() -> bool:
            for job in admin.job_names(ns):
                if not admin.job(ns, job)["spec"].get("suspend"):
                    admin.finish_pods(ns, job)
            return all(admin.status(ns, t).get("phase") == "Succeeded" for t in ("first", "second"))

        wait_for(step, timeout=180, what="both trainings Succeeded")
        report("resumed", watch, "first-stage1", "second-stage1", "first-stage2", "second-stage2")
    for name in ("first", "second"):
        reasons = admin.event_reasons(ns, name)
        assert "Suspended" in reasons and "Resumed" in reasons, reasons


def test_two_nodes_are_one_workload(admin: Api, ns: str, operator: OperatorProcess) -> None:
    queues(admin, ns, gpus=2)
    with Watch(admin, ns) as watch:
        admin.new_training(ns, "coco", spec(admin, ns, "coco", numNodes=2))
        wl = wait_for(lambda: (w := workload(admin, ns, "coco-stage1")) and admitted(w) and w, timeout=60,
                      what="one admitted Workload")
        assert [(p["name"], p["count"]) for p in wl["spec"]["podSets"]] == [("main", 2)]
        assert len(workloads(admin, ns)) == 1
        for stage in (1, 2):
            wait_for(lambda s=stage: len(live_pods(admin, ns, f"coco-stage{s}")) == 2, timeout=60,
                     what=f"stage {stage}'s two pods")
            admin.finish_pods(ns, f"coco-stage{stage}")
        wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", timeout=60, what="Succeeded")
        report("two nodes", watch, "coco-stage1", "coco-stage2")
        assert [watch.counts(f"coco-stage{s}")[1:] for s in (1, 2)] == [(2, [True, False])] * 2
