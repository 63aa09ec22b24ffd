"""Reconciling and Stalled (kstatus conventions) for every state a training can be in, from lifecycle.decide."""

from __future__ import annotations

from typing import Any

import pytest

from im2txt_operator import conditions as cond
from im2txt_operator import health
from im2txt_operator.decisions import Problem, status_patch
from im2txt_operator.job_state import JobState, job_state
from im2txt_operator.lifecycle import decide
from im2txt_operator.spec import parse_spec

NOW = "2026-11-25T12:00:00Z"
BASE = {"dataPath": "pvc://data/", "outputPath": "pvc://out/", "numberOfSteps": 100, "stage2NumberOfSteps": 300}
SECRET = Problem("spec.credentialsSecret", "SecretNotFound", "spec.credentialsSecret: Secret 'k' not found")
CLAIM = Problem("spec.dataPath", "ClaimNotFound", "spec.dataPath: PersistentVolumeClaim 'data' not found")
REJECTED = Problem("spec.image", "JobRejected", "spec.image: the API server refused Job t-stage1: denied")
DONE1 = [cond.condition(None, "Stage1Complete", True, "JobSucceeded", "", 1, NOW)]


def job(stage: int, **kw: Any) -> JobState:
    return JobState(stage=stage, name=f"t-stage{stage}", target=100 if stage == 1 else 300, **kw)


# id, spec changes, problem, previous status, jobs -> phase, (Reconciling, reason), (Stalled, reason), Ready
TABLE: list[tuple[str, dict[str, Any], Problem | None, dict[str, Any] | None, dict[int, JobState],
                  tuple[str, tuple[str, str], tuple[str, str], str]]] = [
    ("queued: the Job was just created", {}, None, None, {},
     ("Running", ("True", "Starting"), ("False", "Running"), "True")),
    ("starting: no pod ready yet", {}, None, None, {1: job(1, active=1)},
     ("Running", ("True", "Starting"), ("False", "Running"), "True")),
    ("training: a pod is ready", {}, None, None, {1: job(1, active=1, ready=1)},
     ("Running", ("True", "Training"), ("False", "Running"), "True")),
    ("retrying: a pod failed, another runs", {}, None, None, {1: job(1, active=1, failed_pods=2)},
     ("Running", ("True", "Retrying"), ("False", "Running"), "True")),
    ("advancing: stage 1 done, stage 2 created", {}, None, None, {1: job(1, succeeded=True)},
     ("Running", ("True", "Advancing"), ("False", "Running"), "True")),
    ("stage 2 training", {}, None, {"conditions": DONE1}, {1: job(1, succeeded=True), 2: job(2, ready=1)},
     ("Running", ("True", "Training"), ("False", "Running"), "True")),
    # Queued for Kueue: still on its way (kstatus InProgress), Kueue's reason is in the Queued condition.
    ("a Job Kueue holds: queued, not resumed by the operator", {}, None, None, {1: job(1, suspended=True)},
     ("Queued", ("True", "Queued"), ("False", "Queued"), "True")),
    ("a queued training's Job just created, suspended for Kueue", {"queueName": "gpu-queue"}, None, None, {},
     ("Queued", ("True", "Queued"), ("False", "Queued"), "True")),
    ("resuming: the stage's Job made again", {}, None, {"phase": "Suspended", "stages": [{"stage": 1}]}, {},
     ("Running", ("True", "Resuming"), ("False", "Running"), "True")),
    ("succeeded", {}, None, None, {1: job(1, succeeded=True), 2: job(2, succeeded=True)},
     ("Succeeded", ("False", "Succeeded"), ("False", "Succeeded"), "True")),
    ("stopped after stage 1", {"autoAdvance": False}, None, None, {1: job(1, succeeded=True)},
     ("Succeeded", ("False", "Succeeded"), ("False", "Succeeded"), "True")),
    ("suspended", {"suspend": True}, None, None, {1: job(1, suspended=True)},
     ("Suspended", ("False", "Suspended"), ("False", "Suspended"), "True")),
    ("suspended before any Job", {"suspend": True}, None, None, {},
     ("Suspended", ("False", "Suspended"), ("False", "Suspended"), "True")),
    ("failed for good", {}, None, None, {1: job(1, failed=True, reason="BackoffLimitExceeded", failed_pods=4)},
     ("Failed", ("False", "Failed"), ("True", "BackoffLimitExceeded"), "False")),
    ("deadline exceeded", {}, None, None, {1: job(1, failed=True, reason="DeadlineExceeded")},
     ("Failed", ("False", "Failed"), ("True", "DeadlineExceeded"), "False")),
    ("missing Secret, the pod waits", {}, SECRET, None, {1: job(1, active=1)},
     ("Pending", ("False", "Pending"), ("True", "SecretNotFound"), "False")),
    ("missing claim, no Job", {}, CLAIM, None, {},
     ("Pending", ("False", "Pending"), ("True", "ClaimNotFound"), "False")),
    ("Job refused by the API server", {}, REJECTED, None, {},
     ("Pending", ("False", "Pending"), ("True", "JobRejected"), "False")),
]


@pytest.mark.parametrize(("spec", "problem", "status", "jobs", "expected"), [t[1:] for t in TABLE],
                         ids=[t[0] for t in TABLE])
def test_reconciling_and_stalled(spec: dict[str, Any], problem: Problem | None, status: dict[str, Any] | None,
                                 jobs: dict[int, JobState], expected: tuple[Any, ...]) -> None:
    phase, reconciling, stalled, ready = expected
    d = decide("t", parse_spec({**BASE, **spec}), problem, 4, status, jobs, NOW)
    by_type = {c["type"]: c for c in d.status["conditions"]}
    assert d.status["phase"] == phase
    assert (by_type["Reconciling"]["status"], by_type["Reconciling"]["reason"]) == reconciling
    assert (by_type["Stalled"]["status"], by_type["Stalled"]["reason"]) == stalled
    assert by_type["Ready"]["status"] == ready
    assert by_type["Reconciling"]["observedGeneration"] == by_type["Stalled"]["observedGeneration"] == 4
    # Never both: kstatus reads Reconciling first, and a blocked training is not progressing.
    assert not (by_type["Reconciling"]["status"] == by_type["Stalled"]["status"] == "True")


def test_stalled_says_the_field_and_the_failure_in_its_message() -> None:
    d = decide("t", parse_spec(BASE), SECRET, 1, None, {1: job(1, active=1)}, NOW)
    assert cond.find(d.status["conditions"], "Stalled")["message"] == SECRET.message  # type: ignore[index]
    failed = job(1, failed=True, reason="BackoffLimitExceeded", message="too many failures")
    d = decide("t", parse_spec(BASE), None, 1, None, {1: failed}, NOW)
    stalled = cond.find(d.status["conditions"], "Stalled")
    assert stalled is not None and stalled["message"] == d.status["message"] == (
        "stage 1 Job t-stage1 failed: BackoffLimitExceeded: too many failures")


def test_an_unparseable_spec_is_stalled() -> None:
    problem = Problem("spec.dataPath", "InvalidSpec", "spec.dataPath: expected ...")
    d = decide("t", None, problem, 2, {"phase": "Running"}, {1: job(1, ready=1)}, NOW)
    by_type = {c["type"]: c for c in d.status["conditions"]}
    assert (by_type["Stalled"]["status"], by_type["Stalled"]["reason"]) == ("True", "InvalidSpec")
    assert by_type["Reconciling"]["status"] == "False"


def test_reconciling_messages_say_what_happens_without_repeating_the_stage() -> None:
    spec = parse_spec(BASE)

    def message(jobs: dict[int, JobState], status: dict[str, Any] | None = None) -> str:
        c = cond.find(decide("t", spec, None, 1, status, jobs, NOW).status["conditions"], "Reconciling")
        assert c is not None
        return str(c["message"])

    assert message({}) == "stage 1: Job t-stage1 trains to global step 100 (its Job was just created)"
    assert message({1: job(1, active=1)}) == "stage 1: Job t-stage1 trains to global step 100 (no pod is ready yet)"
    assert message({1: job(1, ready=1)}) == "stage 1: Job t-stage1 trains to global step 100"
    assert message({1: job(1, failed_pods=1)}) == (
        "stage 1: Job t-stage1 trains to global step 100 (retrying after 1 failed pod)")
    assert message({1: job(1, succeeded=True)}) == (
        "stage 2: Job t-stage2 trains to global step 300 (stage 1 succeeded, its Job was just created)")


def test_a_pod_becoming_ready_changes_only_the_reconciling_reason() -> None:
    spec = parse_spec(BASE)
    first = decide("t", spec, None, 1, None, {1: job(1, active=1)}, NOW)
    later = decide("t", spec, None, 1, first.status, {1: job(1, active=1, ready=1)}, "2026-11-26T00:00:00Z")
    patch = status_patch(first.status, later.status)
    assert set(patch) == {"conditions"} and later.event is None
    changed = [c for c in patch["conditions"] if c not in first.status["conditions"]]
    assert [(c["type"], c["reason"], c["lastTransitionTime"]) for c in changed] == [("Reconciling", "Training", NOW)]


def test_job_state_reads_ready_and_failed_pods() -> None:
    s = job_state({"metadata": {"name": "t-stage1"}, "status": {"active": 1, "ready": 1, "failed": 2}}, 1)
    assert (s.active, s.ready, s.failed_pods) == (1, 1, 2)


def test_at_most_one_is_true_whatever_the_inputs() -> None:
    moving = health.Activity(health.TRAINING, "m")
    blocked = health.Blocked("SecretNotFound", "spec.credentialsSecret: ...")
    out = {c["type"]: c for c in health.conditions(None, "Pending", moving, blocked, 1, NOW)}
    assert (out["Reconciling"]["status"], out["Stalled"]["status"]) == ("False", "True")
