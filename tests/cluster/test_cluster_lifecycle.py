"""A training's life on a real API server and Job controller where the spec, a claim or the operator itself changes
under it: a claim made late, autoAdvance off, a spec edit mid-stage, a stage's deadline, restarts in every state,
and an operator that serves one namespace. The operator serves this test's namespace alone (the ``scoped``
fixture), so its metrics are a positive signal that it looked at these trainings before a check that nothing
happens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, still, wait_for

from im2txt_operator import children, names
from im2txt_operator.pods import Owner
from im2txt_operator.spec import parse_spec

pytestmark = pytest.mark.timeout(300)

Start = Callable[..., OperatorProcess]
SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}


def _claims(admin: Api, ns: str, *names_: str) -> None:
    for claim in names_ or ("coco-data", "runs"):
        admin.claim(ns, claim)


def _training(admin: Api, ns: str, name: str, **changes: Any) -> dict[str, Any]:
    return admin.new_training(ns, name, {**SPEC, "outputPath": f"pvc://runs/{name}/", **changes})


def _args(admin: Api, ns: str, job: str) -> list[str]:
    return (admin.job(ns, job) or {})["spec"]["template"]["spec"]["containers"][0]["args"]


def _job_is(admin: Api, ns: str, job: str, type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True"
               for c in ((admin.job(ns, job) or {}).get("status") or {}).get("conditions") or ())


def _end(admin: Api, ns: str, job: str, phase: str = "Succeeded") -> None:
    """The kubelet's part: the Job controller's pod ends; then the Job controller's: the Job ends with it."""
    wait_for(lambda: admin.pods(ns, job), timeout=60, what=f"{job}'s pod")
    admin.finish_pods(ns, job, phase)
    wait_for(lambda: _job_is(admin, ns, job, "Complete" if phase == "Succeeded" else "Failed"), timeout=60,
             what=f"{job} {phase}")


def test_a_missing_claim_holds_the_stage_until_it_is_made(admin: Api, ns: str, scoped: Start) -> None:
    _claims(admin, ns, "coco-data")
    op = scoped()
    _training(admin, ns, "p")
    ready = wait_for(lambda: (c := admin.condition(ns, "p", "Ready")).get("reason") == "ClaimNotFound" and c,
                     what="Ready=False ClaimNotFound")
    assert ready["status"] == "False"
    assert ready["message"].startswith(f"spec.outputPath: PersistentVolumeClaim 'runs' not found in namespace '{ns}'")
    assert admin.status(ns, "p")["phase"] == "Pending"
    op.reconciled(1)
    still(lambda: admin.job_names(ns) == [], 2)
    # Claims are not watched: the retry with backoff finds it once it is made.
    _claims(admin, ns, "runs")
    wait_for(lambda: admin.job(ns, "p-stage1"), timeout=90, what="the Job once the claim exists")
    wait_for(lambda: admin.condition(ns, "p", "Ready").get("status") == "True", what="Ready")


def test_auto_advance_off_stops_after_stage_1_until_it_is_turned_on(admin: Api, ns: str, scoped: Start) -> None:
    _claims(admin, ns)
    scoped()
    _training(admin, ns, "one", autoAdvance=False)
    _end(admin, ns, "one-stage1")
    wait_for(lambda: admin.status(ns, "one").get("phase") == "Succeeded", what="Succeeded")
    assert admin.condition(ns, "one", "Succeeded")["reason"] == "StoppedAfterStage1"
    assert admin.condition(ns, "one", "Stage2Complete")["reason"] == "AutoAdvanceOff"
    assert "autoAdvance" in admin.status(ns, "one")["message"]
    still(lambda: admin.job_names(ns) == ["one-stage1"], 2)  # after Succeeded was written: no stage 2, no export
    admin.merge_patch(admin.trainings(ns, "one"), {"spec": {"autoAdvance": True}})
    wait_for(lambda: admin.job(ns, "one-stage2"), what="stage 2 after autoAdvance: true")
    assert "--number_of_steps=300" in _args(admin, ns, "one-stage2")


def test_a_spec_edit_mid_stage_applies_to_the_next_stage(admin: Api, ns: str, scoped: Start) -> None:
    _claims(admin, ns)
    scoped()
    _training(admin, ns, "m")
    first = wait_for(lambda: admin.job(ns, "m-stage1"), what="the stage-1 Job")
    wait_for(lambda: admin.status(ns, "m").get("phase") == "Running", what="Running")
    admin.merge_patch(admin.trainings(ns, "m"), {"spec": {"numberOfSteps": 150, "stage2NumberOfSteps": 500}})
    wait_for(lambda: admin.status(ns, "m").get("observedGeneration") == 2, what="generation 2 observed")
    # The running stage is not touched: the same Job, its target, and status says that target.
    assert (admin.job(ns, "m-stage1") or {})["metadata"]["uid"] == first["metadata"]["uid"]
    assert "--number_of_steps=100" in _args(admin, ns, "m-stage1")
    assert admin.status(ns, "m")["target"] == 100
    _end(admin, ns, "m-stage1")
    wait_for(lambda: admin.job(ns, "m-stage2"), what="stage 2")
    assert "--number_of_steps=500" in _args(admin, ns, "m-stage2")
    wait_for(lambda: admin.status(ns, "m").get("target") == 500, what="stage 2's target in status")


def test_a_stage_past_its_deadline_fails_the_training_with_the_jobs_reason(admin: Api, ns: str,
                                                                            scoped: Start) -> None:
    """spec.maxRunSeconds becomes the Job's activeDeadlineSeconds; the real Job controller fails the Job when it
    passes, and the training says so."""
    _claims(admin, ns)
    scoped()
    _training(admin, ns, "b", stage=2, maxRunSeconds=3)
    job = wait_for(lambda: admin.job(ns, "b-stage2"), what="the stage-2 Job")
    assert job["spec"]["activeDeadlineSeconds"] == 3
    wait_for(lambda: admin.status(ns, "b").get("phase") == "Failed", timeout=60, what="Failed")
    failed = admin.condition(ns, "b", "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "DeadlineExceeded")
    assert "DeadlineExceeded" in admin.status(ns, "b")["message"]
    wait_for(lambda: "Failed" in admin.event_reasons(ns, "b"), what="the Failed Event")
    still(lambda: admin.job_names(ns) == ["b-stage2"], 2)  # no stage 1, no export, nothing made again


@pytest.mark.slow
def test_a_restart_in_every_state_makes_nothing_twice(admin: Api, ns: str, scoped: Start) -> None:
    _claims(admin, ns)
    # Made while the operator is down; f's one failed pod fails its Job (backoffLimit 0).
    for name in ("r", "x", "f"):
        _training(admin, ns, name, backoffLimit=0)
    op = scoped()
    stage1 = ["f-stage1", "r-stage1", "x-stage1"]
    wait_for(lambda: admin.job_names(ns) == stage1, what="the stage-1 Jobs")
    wait_for(lambda: all(admin.status(ns, n).get("phase") == "Running" for n in "rxf"), what="Running")
    # Events are posted after the status write; a SIGKILL in between loses one (they are best-effort). Below,
    # restarts must not post them again.
    wait_for(lambda: all("Stage1Started" in admin.event_reasons(ns, n) for n in "rxf"), what="the Events")

    # Killed while stage 1 runs: the next one adopts the Jobs and makes nothing.
    op = scoped()
    op.reconciled(3)
    still(lambda: admin.job_names(ns) == stage1, 2)

    # Killed; then r's and x's stage 1 succeed and f's fails while it is down, and x's died right after making
    # stage 2's Job, before writing status.
    op.stop(kill=True)
    for job, phase in (("r-stage1", "Succeeded"), ("x-stage1", "Succeeded"), ("f-stage1", "Failed")):
        _end(admin, ns, job, phase)
    x = admin.training(ns, "x")
    owner = Owner(x["metadata"]["name"], ns, x["metadata"]["uid"])
    (made,) = [m for m in children.desired(owner, parse_spec(x["spec"]))[names.stage_role(2)] if m["kind"] == "Job"]
    admin.create(admin.jobs(ns), made)
    op = scoped()
    wait_for(lambda: all(admin.status(ns, n).get("stage") == 2 for n in "rx"), what="stage 2 in status")
    wait_for(lambda: admin.status(ns, "f").get("phase") == "Failed", what="f Failed")
    wait_for(lambda: "Stage2Started" in admin.event_reasons(ns, "r"), what="r's Stage2Started Event")
    still(lambda: admin.job_names(ns) == ["f-stage1", "r-stage1", "r-stage2", "x-stage1", "x-stage2"], 2)

    # Stage 2 succeeds while it is down: after a restart, Succeeded and the export.
    op.stop(kill=True)
    _end(admin, ns, "r-stage2")
    op = scoped()
    wait_for(lambda: admin.status(ns, "r").get("phase") == "Succeeded", what="r Succeeded")
    wait_for(lambda: (admin.status(ns, "r").get("export") or {}).get("phase") == "Running", what="r's export")
    wait_for(lambda: "ExportStarted" in admin.event_reasons(ns, "r"), what="r's ExportStarted Event")
    wait_for(lambda: admin.pods(ns, "r-export"), timeout=60, what="the export's pod")

    # A restart with nothing new writes nothing at all: no request of the new process, no change on the server.
    op.stop(kill=True)
    trainings = {n: admin.training(ns, n)["metadata"]["resourceVersion"] for n in "rxf"}
    events = {n: admin.event_reasons(ns, n) for n in "rxf"}
    op = scoped()
    op.reconciled(3)
    still(lambda: {n: admin.training(ns, n)["metadata"]["resourceVersion"] for n in "rxf"} == trainings, 2)
    assert sum(op.samples("im2txt_api_writes_total").values()) == 0, op.samples("im2txt_api_writes_total")
    assert {n: admin.event_reasons(ns, n) for n in "rxf"} == events
    assert admin.job_names(ns) == ["f-stage1", "r-export", "r-stage1", "r-stage2", "x-stage1", "x-stage2"]
    assert events["r"] == ["Stage1Started", "Stage2Started", "Stage2Complete", "ExportStarted"]
    assert events["x"].count("Stage2Started") <= 1 and events["f"] == ["Stage1Started", "Failed"]
    assert [admin.status(ns, n)["phase"] for n in "rxf"] == ["Succeeded", "Running", "Failed"]


def test_an_operator_of_one_namespace_leaves_the_others_and_counts_its_own(admin: Api, ns: str,
                                                                            scoped: Start) -> None:
    elsewhere = admin.namespace(f"{ns}-elsewhere")
    try:
        for where in (ns, elsewhere):
            _claims(admin, where)
        _training(admin, elsewhere, "there")  # made first: when "here" has moved on, "there" was seen
        op = scoped()
        _training(admin, ns, "here")
        _end(admin, ns, "here-stage1")
        wait_for(lambda: admin.pods(ns, "here-stage2"), timeout=60, what="stage 2's pod")
        wait_for(lambda: admin.status(ns, "here").get("phase") == "Running", what="Running")
        still(lambda: admin.job_names(elsewhere) == [] and not admin.status(elsewhere, "there"), 2)
        writes = op.samples("im2txt_api_writes_total")
        assert op.metric("im2txt_trainings", 'phase="Running"') == 1.0
        assert op.metric("im2txt_stage_transitions_total", 'outcome="started",stage="1"') == 1.0
        assert op.metric("im2txt_stage_transitions_total", 'outcome="started",stage="2"') == 1.0
        assert op.metric("im2txt_stage_duration_seconds_count", 'stage="1"') == 1.0
        assert writes['kind="job"'] == 2.0, writes
    finally:
        admin.delete(f"/api/v1/namespaces/{elsewhere}")
