"""whole_status: the decision, what ended stages and the poller's look read, and the children, as one status."""

from __future__ import annotations

from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator.decisions import status_patch
from im2txt_operator.evaluation_status import Result, recorded_targets
from im2txt_operator.pod_reads import PodReads
from im2txt_operator.progress import StepSample
from im2txt_operator.whole_status import Evaluated, Look, Progress, whole_status

NOW = "2026-12-06T12:00:00Z"
RUNNING = {"phase": "Running", "stage": 1, "jobName": "coco-stage1", "target": 100, "step": 10, "eta": None,
           "stages": [{"stage": 1, "target": 100}],
           "conditions": [{"type": "Ready", "status": "True", "reason": "SpecValid", "message": "ok"}]}


def _whole(decided: dict[str, Any], look: Look | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {"ended": {}, "children": {}, "sample": None, "stages": (1, 2),
                            "targets": {1: 100, 2: 300}, "generation": 1, "now": NOW} | kw
    return whole_status(decided, look=look or Look(), **args)


def test_the_decision_comes_first_then_what_ended_stages_said_then_the_children() -> None:
    decided = {**RUNNING, "step": 100}
    whole = _whole(decided, ended={"step": 97, "loss": 2.25, "uploadedStep": 100, "uploadError": None},
                   children={"export": {"phase": "Running"}, "tensorboard": None})
    assert whole.status["step"] == 100  # the decision's (the stage reached its target), not the log's last line
    assert (whole.status["loss"], whole.status["uploadedStep"], whole.status["export"]) == (
        2.25, 100, {"phase": "Running"})
    old = {**RUNNING, "tensorboard": "http://coco-tensorboard.ml.svc:6006", "uploadError": "x"}
    patch = status_patch(old, whole.status)
    assert patch["tensorboard"] is None and patch["uploadError"] is None  # None removes what the old one had
    assert "eta" not in patch  # absent in both: nothing to write
    assert whole.events == [] and whole.sample is None


def _progress(log_step: int, loss: float, job: str = "coco-stage1") -> Progress:
    return Progress(job, PodReads(pods=[], sample=StepSample(log_step, 0.5, loss), uploaded_step=40), clock=5.0)


def test_a_look_at_the_running_stage_gives_step_progress_eta_loss_and_the_upload() -> None:
    whole = _whole(RUNNING, Look(progress=_progress(60, 1.5)))
    assert {k: whole.status[k] for k in ("step", "progress", "eta", "loss", "uploadedStep")} == {
        "step": 60, "progress": 60.0, "eta": "20s", "loss": 1.5, "uploadedStep": 40}
    assert whole.sample == (60, 5.0)
    # a look at another Job's pods (the stage moved on meanwhile) changes nothing but the sample
    other = _whole(RUNNING, Look(progress=_progress(60, 1.5, job="coco-stage2")))
    assert status_patch(RUNNING, other.status) == {}


def test_a_diverged_loss_is_a_condition_and_one_warning() -> None:
    whole = _whole(RUNNING, Look(progress=_progress(60, float("nan"))))
    assert cond.is_true(whole.status["conditions"], "LossDiverged")
    assert [(e.type, e.reason) for e in whole.events] == [("Warning", "LossDiverged")]
    again = _whole(whole.status, Look(progress=_progress(61, float("nan"))))
    assert again.events == []  # already said
    assert cond.is_true(whole.status["conditions"], "Ready")  # the decision's conditions stay


def test_the_evaluation_look_records_figures_at_the_target_the_stage_ran_to_and_warns_once() -> None:
    """The spec's stage-2 steps were edited to 500 after stage 2 ran to 300 (status.stages): 300 stays its final."""
    succeeded = {"phase": "Succeeded", "stage": 2, "stages": [{"stage": 1, "target": 100}, {"stage": 2, "target": 300}],
                 "conditions": []}
    whole = _whole(succeeded, Look(evaluation=Evaluated([Result(250, 12.0), Result(300, 11.5)], None)),
                   targets={1: 100, 2: 500} | recorded_targets(succeeded))  # as reconcile merges them
    assert whole.status["evaluation"]["stages"] == [
        {"stage": 2, "step": 300, "perplexity": 11.5, "finalStep": 300, "finalPerplexity": 11.5}]
    failing = _whole(succeeded, Look(evaluation=Evaluated([], "CrashLoopBackOff (pod x, container evaluator)")))
    assert [e.reason for e in failing.events] == ["EvaluationFailed"]
    assert _whole(failing.status, Look(evaluation=Evaluated([], "CrashLoopBackOff"))).events == []  # said once
    assert cond.is_true(failing.status["conditions"], "EvaluationFailed")
    assert failing.status["phase"] == "Succeeded"  # an evaluation never fails the training


def test_a_stage_that_ended_with_a_diverged_loss_says_so_from_its_last_line() -> None:
    """A stage shorter than the poller's interval: its trainer's last line (the termination message) is all there is."""
    ended = {**RUNNING, "phase": "Succeeded", "step": 100}
    whole = _whole(ended, ended={"step": 100}, ended_sample=StepSample(100, 0.5, float("nan")))
    diverged = cond.find(whole.status["conditions"], "LossDiverged")
    assert diverged is not None and (diverged["status"], diverged["reason"]) == ("True", "NonFiniteLoss")
    assert whole.status.get("loss") is None and whole.status["phase"] == "Succeeded"
    assert [(e.type, e.reason) for e in whole.events] == [("Warning", "LossDiverged")]
    # a finite last line after a diverged look sets the condition back, with no second Warning
    healed = _whole(whole.status, ended_sample=StepSample(100, 0.5, 1.25))
    assert not cond.is_true(healed.status["conditions"], "LossDiverged") and healed.status["loss"] == 1.25
    assert healed.events == []
