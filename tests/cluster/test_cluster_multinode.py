"""numNodes > 1 on a real API server: one Indexed Job per stage and a headless Service, driven by the real Job
controller through both stages."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, wait_for

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
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Stage2Started", "Stage2Complete"]
    admin.delete(admin.trainings(ns, "coco"))
    wait_for(lambda: admin.get(admin.core(ns, "services", "coco-stage1")) is None
             and admin.get(admin.core(ns, "services", "coco-stage2")) is None, timeout=60,
             what="the Services garbage-collected")
