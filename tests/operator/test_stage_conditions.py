"""stage_conditions: every condition of a training's status from an Outcome, on plain data."""

from __future__ import annotations

from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator.decisions import Problem
from im2txt_operator.stage_conditions import Outcome, stage_conditions

NOW = "2026-12-06T12:00:00Z"


def _by_type(conds: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conds}


def test_a_running_stage_1_with_stage_2_planned() -> None:
    out = _by_type(stage_conditions("t", [], None, Outcome("Running", "stage 1 runs", "Stage2Complete", "JobFailed",
                                                           (1, 2), 1, frozenset()), 3, NOW))
    assert out["Ready"] == ("True", "SpecValid") and out["Stage1Complete"] == ("False", "Running")
    assert out["Stage2Complete"] == ("False", "NotStarted") and out["Succeeded"] == ("False", "Running")
    assert out["Failed"] == ("False", "NoFailure") and out["Suspended"] == ("False", "NotSuspended")


def test_stages_outside_the_plan_say_why() -> None:
    stop = _by_type(stage_conditions("t", [], None, Outcome("Succeeded", "done", "StoppedAfterStage1", "JobFailed",
                                                            (1,), 1, frozenset({1})), 1, NOW))
    assert stop["Stage1Complete"] == ("True", "JobSucceeded") and stop["Stage2Complete"] == ("False", "AutoAdvanceOff")
    assert stop["Succeeded"] == ("True", "StoppedAfterStage1")
    at2 = _by_type(stage_conditions("t", [], None, Outcome("Running", "stage 2 runs", "Stage2Complete", "JobFailed",
                                                           (2,), 2, frozenset()), 1, NOW))
    assert at2["Stage1Complete"] == ("False", "StartedAtStage2")


def test_a_problem_or_a_failure_is_not_ready_and_stalls() -> None:
    problem = Problem("spec.credentialsSecret", "SecretNotFound", "spec.credentialsSecret: Secret 'k' not found")
    waiting = _by_type(stage_conditions("t", [], problem, Outcome("Pending", "stage 1 waits", "Stage2Complete",
                                                                  "JobFailed", (1, 2), 1, frozenset()), 1, NOW))
    assert waiting["Ready"] == ("False", "SecretNotFound") and waiting["Stalled"] == ("True", "SecretNotFound")
    failed = _by_type(stage_conditions("t", [], None, Outcome("Failed", "stage 1 failed", "Stage2Complete",
                                                              "BackoffLimitExceeded", (1, 2), 1, frozenset()), 1, NOW))
    assert failed["Ready"] == ("False", "BackoffLimitExceeded") and failed["Failed"] == ("True", "BackoffLimitExceeded")


def test_conditions_it_does_not_own_are_kept_and_times_stay_while_unchanged() -> None:
    earlier = "2026-12-06T10:00:00Z"
    prev = [cond.condition(None, "Ready", True, "SpecValid", "x", 1, earlier),
            cond.condition(None, "LossDiverged", True, "NonFiniteLoss", "nan", 1, earlier)]
    out = stage_conditions("t", prev, None, Outcome("Running", "y", "Stage2Complete", "JobFailed", (1, 2), 1,
                                                    frozenset()), 1, NOW)
    ready, diverged = cond.find(out, "Ready"), cond.find(out, "LossDiverged")
    assert ready is not None and ready["lastTransitionTime"] == earlier and ready["message"] == "y"
    assert diverged == prev[1]
