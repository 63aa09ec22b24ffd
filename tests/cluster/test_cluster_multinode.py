"""numNodes > 1 on a real API server: one Indexed Job per stage and a headless Service, driven by the real Job
controller through both stages."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, still, wait_for

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0, "numNodes": 2, "export": False}


def _live(admin: Api, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in admin.pods(ns, job) if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


def test_two_nodes_run_each_stage_as_one_indexed_job(admin: Api, ns: str, operator: OperatorProcess) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    training = admin.new_training(ns, "coco", SPEC)
    for stage in (1, 2):
        name = f"coco-stage{stage}"
        job = wait_for(lambda n=name: admin.job(ns, n), what=name)
        service = admin.get(admin.core(ns, "services", name))
        assert service is not None and service["spec"]["clusterIP"] == "None"
        assert service["metadata"]["ownerReferences"][0]["uid"] == training["metadata"]["uid"]
        assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == (
            "Indexed", 2, 2)
        # The real Job controller makes one pod per index, named for the headless Service.
        pods = wait_for(lambda n=name: len(p := _live(admin, ns, n)) == 2 and p, timeout=60, what=f"{name}'s pods")
        indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
        assert indexes == ["0", "1"]
        assert sorted(p["spec"]["hostname"] for p in pods) == [f"{name}-0", f"{name}-1"]
        assert all(p["spec"]["subdomain"] == name for p in pods)
        admin.finish_pods(ns, name)
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", what="Succeeded")
    # Events are posted after the status patch: wait for the last one, then none is missing or extra.
    wait_for(lambda: "Stage2Complete" in admin.event_reasons(ns, "coco"), what="the Stage2Complete Event")
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Stage2Started", "Stage2Complete"]
    admin.delete(admin.trainings(ns, "coco"))
    wait_for(lambda: admin.get(admin.core(ns, "services", "coco-stage1")) is None
             and admin.get(admin.core(ns, "services", "coco-stage2")) is None, timeout=60,
             what="the Services garbage-collected")


def test_a_failed_worker_costs_the_stage_one_attempt(admin: Api, ns: str, operator: OperatorProcess) -> None:
    """backoffLimit keeps meaning "retries of the stage": one attempt of two workers may fail both pods."""
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    admin.new_training(ns, "coco", SPEC | {"backoffLimit": 1})
    job = wait_for(lambda: admin.job(ns, "coco-stage1"), what="coco-stage1")
    assert job["spec"]["backoffLimit"] == 2

    def indexes() -> list[str] | None:
        live = _live(admin, ns, "coco-stage1")
        return len(live) == 2 and sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                                         for p in live)

    wait_for(indexes, timeout=60, what="two workers")
    first = {p["metadata"]["name"] for p in _live(admin, ns, "coco-stage1")}
    # Attempt 1: worker 1 dies (OOM, a lost node); the chief's next collective fails and it exits 1 too. The real
    # Job controller replaces each failed index; the stage is not failed.
    assert len(admin.finish_pods(ns, "coco-stage1", "Failed", index="1")) == 1
    assert len(admin.finish_pods(ns, "coco-stage1", "Failed", index="0")) == 1
    wait_for(lambda: indexes() == ["0", "1"] and not first & {p["metadata"]["name"]
                                                              for p in _live(admin, ns, "coco-stage1")},
             timeout=90, what="both workers replaced")
    assert admin.status(ns, "coco")["phase"] == "Running"
    assert admin.condition(ns, "coco", "Failed").get("status") != "True"
    # Attempt 2 fails as a whole: the retry was used, the stage fails with the Job's reason.
    assert len(admin.finish_pods(ns, "coco-stage1", "Failed")) == 2
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Failed", timeout=60, what="Failed")
    assert admin.condition(ns, "coco", "Failed")["reason"] == "BackoffLimitExceeded"
    still(lambda: admin.job(ns, "coco-stage2") is None, 2)
