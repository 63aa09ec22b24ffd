"""What only a real API server showed: Jobs it refuses, Jobs in the way, trainings gone without an event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, reserved_pool_denied, still, wait_for
from control_plane import ControlPlane

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}
# A cluster admin's policy (a ValidatingAdmissionPolicy; Kyverno or Gatekeeper answer alike) refuses Jobs for
# the reserved node pool: the CRD and the operator cannot know it, only the API server's answer tells.
RESERVED = {"nodeSelector": {"pool": "reserved"}}
POLICY = "im2txt-test-reserved-pool"


@pytest.fixture(params=["Invalid", "Forbidden"])
def reserved_pool_policy(admin: Api, ns: str, request: pytest.FixtureRequest) -> Iterator[int]:
    """Deny Jobs of namespace ``ns`` whose pods select pool=reserved, answering 422 Invalid or 403 Forbidden (as
    admission webhooks do); yields the HTTP status."""
    with reserved_pool_denied(admin, ns, POLICY, request.param) as status:
        yield status


def _claims(admin: Api, ns: str) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)


def _warnings(admin: Api, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in admin.events(ns, "coco") if e["reason"] == reason]


def test_a_job_the_api_refuses_is_a_spec_problem_until_fixed(admin: Api, ns: str, reserved_pool_policy: int,
                                                              operator: OperatorProcess) -> None:
    _claims(admin, ns)
    admin.new_training(ns, "coco", {**SPEC, **RESERVED})
    ready = wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("reason") == "JobRejected" and c,
                     what="Ready=False JobRejected")
    assert ready["status"] == "False"
    # A policy names no field (the Job API's own validation does, see tests/operator/test_rejections.py): the
    # message quotes the API server, which names the policy and its reason.
    assert ready["message"].startswith("spec: the API server refused Job coco-stage1: "), ready["message"]
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in ready["message"]
    assert "the reserved pool is for the platform team" in ready["message"]
    status = admin.status(ns, "coco")
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    assert admin.job_names(ns) == []
    # No retry storm: over several progress intervals (1 s here) the Job is not asked for again, and one Event.
    time.sleep(4)
    assert operator.log.count("Job coco-stage1 refused:") == 1, operator.log[-3000:]
    assert len(_warnings(admin, ns, "JobRejected")) == 1
    # Fixing the spec resumes.
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"nodeSelector": None}})
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="the Job after the fix")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")
    assert admin.status(ns, "coco")["phase"] == "Running"


def test_a_job_left_from_an_earlier_training_is_not_driven(admin: Api, ns: str, operator: OperatorProcess) -> None:
    _claims(admin, ns)
    admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="the first training's Job")
    # Deleted with propagationPolicy Orphan: the Job stays, its owner reference goes.
    admin.delete(admin.trainings(ns, "coco"), propagation="Orphan")
    wait_for(lambda: not (admin.job(ns, "coco-stage1") or {}).get("metadata", {}).get("ownerReferences"),
             timeout=60, what="the orphaned Job")
    wait_for(lambda: not admin.training(ns, "coco"), what="the training gone")
    admin.new_training(ns, "coco", SPEC)  # a new object under the same name
    ready = wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("reason") == "JobNotOwned" and c,
                     what="Ready=False JobNotOwned")
    assert ready["status"] == "False" and "Job coco-stage1" in ready["message"]
    assert admin.status(ns, "coco")["phase"] == "Pending"  # not Running: nothing of it runs
    # The old Job is left as it is: not adopted, and its success is not taken for this training's stage 1.
    wait_for(lambda: admin.pods(ns, "coco-stage1"), what="the old Job's pod")
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: any(c["type"] == "Complete" and c["status"] == "True"
                         for c in (admin.job(ns, "coco-stage1") or {}).get("status", {}).get("conditions") or ()),
             what="the old Job complete")
    still(lambda: admin.condition(ns, "coco", "Ready").get("reason") == "JobNotOwned"
          and not admin.job(ns, "coco-stage2") and not admin.job(ns, "coco-stage1")["metadata"].get("ownerReferences"),
          3)
    assert admin.status(ns, "coco")["phase"] == "Pending"
    assert len(_warnings(admin, ns, "JobNotOwned")) == 1
    # Once the old Job is gone, the training starts its own.
    admin.delete(admin.jobs(ns, "coco-stage1"))
    new = wait_for(lambda: (j := admin.job(ns, "coco-stage1")) and j["metadata"].get("ownerReferences") and j,
                   timeout=60, what="the training's own Job")
    assert new["metadata"]["ownerReferences"][0]["uid"] == admin.training(ns, "coco")["metadata"]["uid"]
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running")


def test_a_training_gone_without_an_event_is_forgotten(installed: ControlPlane, admin: Api, ns: str,
                                                       operator: OperatorProcess) -> None:
    _claims(admin, ns)
    admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running")
    running = operator.metric("im2txt_trainings", 'phase="Running"')
    assert running is not None and running >= 1

    def vanish() -> None:
        # While the API server is down the training disappears from etcd and the history is compacted, so the
        # operator's watch resumes into 410 Gone and a re-list: no DELETED event ever tells it.
        installed.etcdctl("del", f"/registry/im2txt.dev/im2txttrainings/{ns}/coco")
        revision = json.loads(installed.etcdctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
        installed.etcdctl("compact", str(revision))

    installed.restart_apiserver(vanish)
    assert admin.training(ns, "coco") == {}
    forgotten = f"training {ns}/coco is gone from the API; forgotten"
    wait_for(lambda: forgotten in operator.log, timeout=30, what="the operator to forget the training",
             on_timeout=lambda: operator.log[-3000:])
    # Other tests' trainings may be going too, so the cluster-wide gauge can only be bounded from above here.
    assert (operator.metric("im2txt_trainings", 'phase="Running"') or 0) <= running - 1
    # Forgotten means no longer reconciled: nothing more about it in the log over a few progress intervals.
    after = len(operator.log)
    still(lambda: f"{ns}/coco" not in operator.log[after:], 4)


def test_a_job_gone_without_an_event_is_made_again(installed: ControlPlane, admin: Api, ns: str,
                                                   operator: OperatorProcess) -> None:
    """The operator's own Jobs watch (job_watch): resumed past etcd's history, it lists again, and the Job missing
    from the new list counts as deleted: its training still exists, so the stage's Job is made again."""
    _claims(admin, ns)
    admin.new_training(ns, "coco", SPEC)
    first = wait_for(lambda: admin.job(ns, "coco-stage1"), what="the stage's Job")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running")
    listed = operator.log.count("(410 Gone): listing again")

    def vanish() -> None:
        installed.etcdctl("del", f"/registry/jobs/{ns}/coco-stage1")
        revision = json.loads(installed.etcdctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
        installed.etcdctl("compact", str(revision))

    installed.restart_apiserver(vanish)
    again = wait_for(lambda: (j := admin.job(ns, "coco-stage1")) and j["metadata"]["uid"] != first["metadata"]["uid"]
                     and j, timeout=60, what="the Job made again", on_timeout=lambda: operator.log[-3000:])
    assert again["metadata"]["ownerReferences"][0]["uid"] == admin.training(ns, "coco")["metadata"]["uid"]
    assert operator.log.count("(410 Gone): listing again") > listed
    assert admin.status(ns, "coco")["phase"] == "Running"
