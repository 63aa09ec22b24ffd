"""status.evaluation and EvaluationFailed from the evaluator's log lines and its pod's status (pure)."""

from __future__ import annotations

from im2txt_operator import evaluation_status as es
from im2txt_operator.evaluation_status import Result

NOW, LATER = "2026-12-06T20:00:00Z", "2026-12-06T21:00:00Z"
BOTH, TARGETS = (1, 2), {1: 1000, 2: 3000}

LOG = """INFO something else
evaluation: {"examples": 64, "final": false, "global_step": 600, "perplexity": 31.25, "words": 700}
evaluation: not json
evaluation: {"global_step": "x", "perplexity": 1}
evaluation: {"global_step": 700, "perplexity": NaN}
evaluation: {"examples": 64, "final": true, "global_step": 1000, "perplexity": 20.123456789, "bleu4": 0.123456}
"""


def test_parse_results_keeps_well_formed_finite_lines():
    assert es.parse_results(LOG) == [Result(600, 31.25), Result(1000, 20.123456789, 0.123456)]


def test_stage_of_follows_the_stage_ranges():
    assert [es.stage_of(s, BOTH, 1000) for s in (0, 999, 1000, 1001)] == [1, 1, 1, 2]
    assert es.stage_of(5, (2,), 1000) == 2  # a training that starts at stage 2
    assert es.stage_of(5000, (1,), 1000) == 1


def test_merge_keeps_newest_and_final_per_stage():
    first = es.merge(None, es.parse_results(LOG), BOTH, TARGETS)
    assert first == {"step": 1000, "perplexity": 20.1235, "bleu4": 0.1235, "stages": [
        {"stage": 1, "step": 1000, "perplexity": 20.1235, "bleu4": 0.1235,
         "finalStep": 1000, "finalPerplexity": 20.1235, "finalBleu4": 0.1235}]}
    # Stage 2 runs; the log tail no longer holds stage 1's lines: nothing recorded is lost.
    second = es.merge(first, [Result(1600, 15.0), Result(1200, 17.0)], BOTH, TARGETS)
    assert second["step"] == 1600 and second["perplexity"] == 15.0 and "bleu4" not in second
    assert second["stages"][0] == first["stages"][0]
    assert second["stages"][1] == {"stage": 2, "step": 1600, "perplexity": 15.0}
    third = es.merge(second, [Result(3000, 12.5)], BOTH, TARGETS)
    assert third["stages"][1] == {"stage": 2, "step": 3000, "perplexity": 12.5, "finalStep": 3000,
                                  "finalPerplexity": 12.5}
    assert es.merge(third, [], BOTH, TARGETS) == third


def _pod(name: str, created: str, waiting: str | None = None, crashed: dict | None = None) -> dict:
    status = {"name": "evaluator", "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
    if crashed:
        status["lastState"] = {"terminated": crashed}
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {},
            "status": {"phase": "Running", "containerStatuses": [status]}}


MISSING = {"exitCode": 1, "message": "trainer: --input_file_pattern: no files match '/data/data/val-?????-of-00004'"}


def test_failure_names_the_crash_of_the_newest_pod():
    assert es.failure([]) is None
    assert es.failure([_pod("e-1", NOW)]) is None
    text = es.failure([_pod("e-0", "2026-12-06T19:00:00Z"), _pod("e-1", NOW, "CrashLoopBackOff", MISSING)])
    assert text == ("trainer: --input_file_pattern: no files match '/data/data/val-?????-of-00004' (exit 1) "
                    "(pod e-1, container evaluator: CrashLoopBackOff)")
    oom = {"exitCode": 137, "reason": "OOMKilled"}
    assert "evaluator: OOMKilled" in es.failure([_pod("e-1", NOW, "CrashLoopBackOff", oom)])
    assert "ImagePullBackOff" in es.failure([_pod("e-1", NOW, "ImagePullBackOff")])


def test_patch_sets_and_clears_evaluation_failed():
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    failing = es.patch(status, [], "trainer: no files match (pod e-1, exit 1)", BOTH, TARGETS, 3, NOW)
    assert "evaluation" not in failing
    [ready, failed] = failing["conditions"]
    assert ready == {"type": "Ready", "status": "True"}  # the training's own conditions are untouched
    assert failed["status"] == "True" and failed["reason"] == "EvaluatorFailing"
    assert "training goes on: trainer: no files match" in failed["message"] and failed["observedGeneration"] == 3
    status = {**status, **failing}
    assert es.patch(status, [], "trainer: no files match (pod e-1, exit 1)", BOTH, TARGETS, 3, LATER) == {}
    healed = es.patch(status, [Result(600, 30.0)], None, BOTH, TARGETS, 3, LATER)
    assert healed["evaluation"]["perplexity"] == 30.0
    cleared = next(c for c in healed["conditions"] if c["type"] == es.CONDITION)
    assert cleared["status"] == "False" and cleared["lastTransitionTime"] == LATER
    assert es.patch({"phase": "Running"}, [], None, BOTH, TARGETS, 3, NOW) == {}  # never failed: no condition
