"""side_problems.flag: a problem with TensorBoard or the export Job makes Ready=False naming it, and leaves the
phase, the stages, the actions and the other conditions as the lifecycle decided them. Plain data."""

from __future__ import annotations

import copy
from typing import Any

from im2txt_operator.decisions import CreateJob, Decision, Event, Problem
from im2txt_operator.side_problems import flag

T0, NOW = "2026-12-06T10:00:00Z", "2026-12-06T12:00:00Z"
PROBLEM = Problem("metadata.name", "ServiceNotOwned",
                  "Service coco-tensorboard in namespace ml is not this training's: it has no controller")


def _ready(status: str, reason: str, message: str, since: str = T0) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message, "lastTransitionTime": since,
            "observedGeneration": 3}


STAGE1 = {"type": "Stage1Complete", "status": "False", "reason": "Running", "message": "stage 1 is running",
          "lastTransitionTime": T0, "observedGeneration": 3}
RECONCILING = {"type": "Reconciling", "status": "True", "reason": "Training", "message": "stage 1: step 40/100",
               "lastTransitionTime": T0, "observedGeneration": 3}


def _decision(event: Event | None = None) -> Decision:
    return Decision({"phase": "Running", "stage": 1, "message": "stage 1: step 40/100",
                     "conditions": [_ready("True", "SpecValid", "stage 1: step 40/100"), STAGE1, RECONCILING]},
                    (CreateJob(2),), event)


def test_ready_turns_false_naming_the_problem_and_nothing_else_changes() -> None:
    decision = _decision(Event("Normal", "Stage1Started", "stage 1 Job coco-stage1 created"))
    before = copy.deepcopy(decision.status)
    previous = {"conditions": [_ready("True", "SpecValid", "stage 1: step 30/100")]}
    flagged, warning = flag(decision, previous, PROBLEM, 4, NOW)
    ready, *rest = flagged.status["conditions"]
    assert ready == {"type": "Ready", "status": "False", "reason": "ServiceNotOwned", "message": PROBLEM.message,
                     "lastTransitionTime": NOW, "observedGeneration": 4}
    assert rest == [STAGE1, RECONCILING]  # the stages go on: no Stalled, no other condition touched
    assert {k: v for k, v in flagged.status.items() if k != "conditions"} == {
        "phase": "Running", "stage": 1, "message": "stage 1: step 40/100"}
    assert flagged.actions == (CreateJob(2),)
    assert flagged.event == Event("Normal", "Stage1Started", "stage 1 Job coco-stage1 created")  # kept
    assert warning == Event("Warning", "ServiceNotOwned", PROBLEM.message)
    assert decision.status == before  # the decision it was given is not changed


def test_a_problem_ready_says_already_is_not_announced_again_and_keeps_its_time() -> None:
    previous = {"conditions": [_ready("False", "ServiceNotOwned", PROBLEM.message)]}
    flagged, warning = flag(_decision(), previous, PROBLEM, 3, NOW)
    assert warning is None
    assert flagged.status["conditions"][0]["lastTransitionTime"] == T0  # still False since T0
    # A different problem while Ready stays False: a new Warning, the same transition time.
    other = Problem("spec.export", "JobNotOwned", "Job coco-export in namespace ml is not this training's")
    flagged, warning = flag(_decision(), previous, other, 3, NOW)
    assert warning == Event("Warning", "JobNotOwned", other.message)
    assert flagged.status["conditions"][0]["reason"] == "JobNotOwned"
    assert flagged.status["conditions"][0]["lastTransitionTime"] == T0


def test_the_lifecycles_spec_valid_event_is_dropped_since_ready_did_not_come_back() -> None:
    """The lifecycle sees no spec problem and would announce Ready's return; the side problem keeps it False."""
    previous = {"conditions": [_ready("False", "ServiceNotOwned", PROBLEM.message)]}
    flagged, warning = flag(_decision(Event("Normal", "SpecValid", "the spec problem is fixed")), previous,
                            PROBLEM, 3, NOW)
    assert flagged.event is None and warning is None
    assert flagged.status["conditions"][0]["status"] == "False"

