"""lifecycle.decide: a table of situations -> phase, stage, actions, key conditions and the Event."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from im2txt_operator import conditions as cond
from im2txt_operator.decisions import CreateJob, DeleteJob, Event, Problem, status_patch
from im2txt_operator.job_state import JobState
from im2txt_operator.lifecycle import decide
from im2txt_operator.pod_reports import ContainerFailure
from im2txt_operator.spec import parse_spec
from im2txt_operator.workloads import Hold

NOW = "2026-11-25T12:00:00Z"
BASE = {"dataPath": "pvc://data/", "outputPath": "pvc://out/", "numberOfSteps": 100, "stage2NumberOfSteps": 300}
SECRET = Problem("spec.credentialsSecret", "SecretNotFound", "spec.credentialsSecret: Secret 'k' not found")


def running(stage: int, **kw: Any) -> JobState:
    return JobState(stage=stage, name=f"t-stage{stage}", active=1, target=100 if stage == 1 else 300,
                    uid=f"uid{stage}", **kw)


def succeeded(stage: int) -> JobState:
    return JobState(stage=stage, name=f"t-stage{stage}", succeeded=True, completion_time=NOW)


def failed(stage: int, reason: str = "BackoffLimitExceeded") -> JobState:
    return JobState(stage=stage, name=f"t-stage{stage}", failed=True, reason=reason, message="too many failures")


def status_with(*complete: int, phase: str = "Running", stage: int = 1) -> dict[str, Any]:
    conds = [cond.condition(None, f"Stage{s}Complete", True, "JobSucceeded", "", 1, NOW) for s in complete]
    conds.append(cond.condition(None, "Ready", True, "SpecValid", "", 1, NOW))
    return {"phase": phase, "stage": stage, "conditions": conds}


def had_job(status: dict[str, Any], stage: int = 1) -> dict[str, Any]:
    """A status whose stage had a Job before (status.stages lists it)."""
    return {**status, "stages": [{"stage": stage, "jobName": f"t-stage{stage}", "target": 100, "outcome": "Running"}]}


QUEUE = {"queueName": "gpu-queue"}
PENDING = Hold("gpu-queue", "Pending", "couldn't assign flavors to pod set main: insufficient unused quota for "
               "nvidia.com/gpu in flavor default-flavor, 1 more needed")
DEACTIVATED = Hold("gpu-queue", "Deactivated", "The workload is deactivated", evicted=True)


# id, spec changes, problem, previous status, jobs, expected (phase, stage, actions, event reason, true conditions)
TABLE: list[tuple[str, dict[str, Any], Problem | None, dict[str, Any] | None, dict[int, JobState],
                  tuple[str, int, tuple[Any, ...], str | None, set[str]]]] = [
    ("new training creates stage 1", {}, None, None, {},
     ("Running", 1, (CreateJob(1),), "Stage1Started", {"Ready", "Reconciling"})),
    ("new training at stage 2 creates stage 2", {"stage": 2}, None, None, {},
     ("Running", 2, (CreateJob(2),), "Stage2Started", {"Ready", "Reconciling"})),
    ("stage 1 running: nothing to do", {}, None, status_with(), {1: running(1)},
     ("Running", 1, (), None, {"Ready", "Reconciling"})),
    ("stage 1 succeeded: create stage 2", {}, None, status_with(), {1: succeeded(1)},
     ("Running", 2, (CreateJob(2),), "Stage2Started", {"Ready", "Stage1Complete", "Reconciling"})),
    ("stage 1 succeeded, autoAdvance off: stop", {"autoAdvance": False}, None, status_with(), {1: succeeded(1)},
     ("Succeeded", 1, (), "StoppedAfterStage1", {"Ready", "Stage1Complete", "Succeeded"})),
    ("autoAdvance turned on after the stop: stage 2", {}, None,
     status_with(1, phase="Succeeded"), {1: succeeded(1)},
     ("Running", 2, (CreateJob(2),), "Stage2Started", {"Ready", "Stage1Complete", "Reconciling"})),
    ("stage 2 running", {}, None, status_with(1, stage=2), {1: succeeded(1), 2: running(2)},
     ("Running", 2, (), None, {"Ready", "Stage1Complete", "Reconciling"})),
    # A leader stopped between creating stage 2's Job and writing status: the next one records the start, Event too.
    ("stage 2's Job made, status not written", {}, None, status_with(), {1: succeeded(1), 2: running(2)},
     ("Running", 2, (), "Stage2Started", {"Ready", "Stage1Complete", "Reconciling"})),
    ("stage 1's Job made, no status yet", {}, None, None, {1: running(1)},
     ("Running", 1, (), "Stage1Started", {"Ready", "Reconciling"})),
    ("stage 2 succeeded: training succeeded", {}, None, status_with(1, stage=2), {1: succeeded(1), 2: succeeded(2)},
     ("Succeeded", 2, (), "Stage2Complete", {"Ready", "Stage1Complete", "Stage2Complete", "Succeeded"})),
    ("stage 1 failed for good", {}, None, status_with(), {1: failed(1)},
     ("Failed", 1, (), "Failed", {"Failed", "Stalled"})),
    ("stage 2 deadline exceeded", {}, None, status_with(1, stage=2),
     {1: succeeded(1), 2: failed(2, "DeadlineExceeded")},
     ("Failed", 2, (), "Failed", {"Stage1Complete", "Failed", "Stalled"})),
    # Suspend deletes the stage's Job (that uid); resume creates it again once the old one is gone.
    ("suspend a running stage", {"suspend": True}, None, status_with(), {1: running(1)},
     ("Suspended", 1, (DeleteJob(1, "uid1"),), "Suspended", {"Ready", "Suspended"})),
    ("suspended: its Job being deleted is not deleted again", {"suspend": True}, None,
     status_with(phase="Suspended"), {1: running(1, deleting=True)},
     ("Suspended", 1, (), None, {"Ready", "Suspended"})),
    ("resumed before the old Job is gone: wait for it", {}, None, had_job(status_with(phase="Suspended")),
     {1: running(1, deleting=True)}, ("Suspended", 1, (), None, {"Ready", "Suspended"})),
    ("resume a suspended stage: its Job again", {}, None, had_job(status_with(phase="Suspended")), {},
     ("Running", 1, (CreateJob(1),), "Resumed", {"Ready", "Reconciling"})),
    ("a Job someone else suspended is never resumed by the operator", {}, None, status_with(),
     {1: running(1, suspended=True)}, ("Queued", 1, (), None, {"Ready", "Queued", "Reconciling"})),
    # Kueue: the Job is created suspended, Kueue alone unsuspends it; status says why it waits.
    ("queued training creates its Job, suspended", QUEUE, None, None, {},
     ("Queued", 1, (CreateJob(1),), "Stage1Started", {"Ready", "Queued", "Reconciling"})),
    ("waiting for quota: Kueue's reason, one Event", QUEUE, None, status_with(phase="Queued"),
     {1: running(1, suspended=True, queue="gpu-queue", held=PENDING)},
     ("Queued", 1, (), "Queued", {"Ready", "Queued", "Reconciling"})),
    ("evicted mid-stage: held, not resumed", QUEUE, None, status_with(),
     {1: running(1, suspended=True, queue="gpu-queue", held=DEACTIVATED)},
     ("Queued", 1, (), "Evicted", {"Ready", "Queued", "Reconciling"})),
    ("admitted: running", QUEUE, None, status_with(phase="Queued"), {1: running(1, queue="gpu-queue")},
     ("Running", 1, (), "Admitted", {"Ready", "Reconciling"})),
    ("suspend a queued stage: its Job and Workload go", QUEUE | {"suspend": True}, None, status_with(phase="Queued"),
     {1: running(1, suspended=True, queue="gpu-queue", held=PENDING)},
     ("Suspended", 1, (DeleteJob(1, "uid1"),), "Suspended", {"Ready", "Suspended"})),
    ("suspended before any Job: create none", {"suspend": True}, None, None, {},
     ("Suspended", 1, (), "Suspended", {"Ready", "Suspended"})),
    ("missing Secret: no Job, condition names the field", {}, SECRET, None, {},
     ("Pending", 1, (), "SecretNotFound", {"Stalled"})),
    ("missing Secret seen in stage 1's pod: the Job stays, the stage waits", {}, SECRET, status_with(),
     {1: running(1)}, ("Pending", 1, (), "SecretNotFound", {"Stalled"})),
    ("restart after stage 1 success, status lost", {}, None, None, {1: succeeded(1)},
     ("Running", 2, (CreateJob(2),), "Stage2Started", {"Ready", "Stage1Complete", "Reconciling"})),
    ("stage 1 Job deleted after success: never repeat it", {}, None, status_with(1), {},
     ("Running", 2, (CreateJob(2),), "Stage2Started", {"Ready", "Stage1Complete", "Reconciling"})),
    ("stage 1 Job gone but stage 2 exists: do not go back", {}, None, None, {2: running(2)},
     ("Running", 2, (), "Stage2Started", {"Ready", "Reconciling"})),  # the first status to say stage 2 says so
    ("failed Job deleted by the user: retry the stage", {}, None, status_with(phase="Failed"), {},
     ("Running", 1, (CreateJob(1),), "Stage1Started", {"Ready", "Reconciling"})),
    ("spec.stage changed after start is ignored", {"stage": 2}, None, status_with(), {1: running(1)},
     ("Running", 1, (), None, {"Ready", "Reconciling"})),
    ("autoAdvance off after stage 2 started: keep going", {"autoAdvance": False}, None, status_with(1, stage=2),
     {1: succeeded(1), 2: running(2)}, ("Running", 2, (), None, {"Ready", "Stage1Complete", "Reconciling"})),
    ("succeeded training stays succeeded", {}, None,
     status_with(1, 2, phase="Succeeded", stage=2), {1: succeeded(1), 2: succeeded(2)},
     ("Succeeded", 2, (), None, {"Ready", "Stage1Complete", "Stage2Complete", "Succeeded"})),
]


@pytest.mark.parametrize(("spec", "problem", "status", "jobs", "expected"), [t[1:] for t in TABLE],
                         ids=[t[0] for t in TABLE])
def test_table(spec: dict[str, Any], problem: Problem | None, status: dict[str, Any] | None,
               jobs: dict[int, JobState], expected: tuple[Any, ...]) -> None:
    phase, stage, actions, event, true_conditions = expected
    d = decide("t", parse_spec({**BASE, **spec}), problem, 3, status, jobs, NOW)
    assert (d.status["phase"], d.status["stage"], d.actions) == (phase, stage, actions)
    assert (d.event.reason if d.event else None) == event
    assert {c["type"] for c in d.status["conditions"] if c["status"] == "True"} == true_conditions
    assert d.status["jobName"] == f"t-stage{stage}"
    assert d.status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in d.status["conditions"])
    if problem is not None:
        ready = cond.find(d.status["conditions"], "Ready")
        assert ready is not None and ready["status"] == "False"
        assert ready["message"].startswith("spec.credentialsSecret")


def test_failure_carries_the_job_reason() -> None:
    d = decide("t", parse_spec(BASE), None, 1, status_with(), {1: failed(1, "DeadlineExceeded")}, NOW)
    failed_c = cond.find(d.status["conditions"], "Failed")
    assert failed_c is not None and failed_c["reason"] == "DeadlineExceeded"
    assert "DeadlineExceeded" in d.status["message"] and d.event is not None and d.event.type == "Warning"


TRAINER_FAILED = ContainerFailure("t-stage1-x7k2p", "trainer", 2,
                                  "trainer: --train_dir '/data/output/' is not writable: Permission denied")


def test_a_failed_stage_says_the_failed_containers_reason_in_failed_ready_and_the_event() -> None:
    job = dataclasses.replace(failed(1), failure=TRAINER_FAILED)
    d = decide("t", parse_spec(BASE), None, 1, status_with(), {1: job}, NOW)
    expected = ("stage 1 failed: trainer: --train_dir '/data/output/' is not writable: Permission denied "
                "(pod t-stage1-x7k2p, exit 2)")
    assert d.status["message"] == expected
    failed_c, ready = cond.find(d.status["conditions"], "Failed"), cond.find(d.status["conditions"], "Ready")
    assert failed_c is not None and (failed_c["status"], failed_c["reason"], failed_c["message"]) == (
        "True", "BackoffLimitExceeded", expected)
    # Ready's message is the Message column of kubectl get -o wide.
    assert ready is not None and (ready["status"], ready["reason"], ready["message"]) == (
        "False", "BackoffLimitExceeded", expected)
    assert d.event == Event("Warning", "Failed", expected)
    # Later decisions (the pods are read once, when the stage ends) keep it: nothing changes, no second Event.
    again = decide("t", parse_spec(BASE), None, 1, d.status, {1: failed(1)}, "2026-11-26T00:00:00Z")
    assert status_patch(d.status, again.status) == {} and again.event is None


def test_an_unwritable_output_is_named_as_such() -> None:
    check = ContainerFailure("t-stage1-x7k2p", "output-check", 3, "output-check: spec.outputPath 'pvc://out/' is "
                             "not writable by uid 1000 gid 1000 (...); ... then delete the failed Job to retry")
    job = dataclasses.replace(failed(1, "PodFailurePolicy"), failure=check)
    d = decide("t", parse_spec(BASE), None, 1, status_with(), {1: job}, NOW)
    assert cond.find(d.status["conditions"], "Failed")["reason"] == "OutputNotWritable"  # type: ignore[index]
    assert d.status["message"].startswith("stage 1 failed: output-check: spec.outputPath 'pvc://out/' is not writable")
    assert d.status["message"].endswith("(pod t-stage1-x7k2p, exit 3)")


def test_a_deadline_is_the_jobs_reason_not_the_stopped_containers() -> None:
    job = dataclasses.replace(failed(1, "DeadlineExceeded"), failure=dataclasses.replace(
        TRAINER_FAILED, exit_code=143, reason="trainer: stopped by SIGTERM"))
    d = decide("t", parse_spec(BASE), None, 1, status_with(), {1: job}, NOW)
    assert d.status["message"] == "stage 1 Job t-stage1 failed: DeadlineExceeded: too many failures"


def test_ready_says_what_runs_and_a_later_stage_has_not_started() -> None:
    d = decide("t", parse_spec(BASE), None, 1, None, {1: running(1)}, NOW)
    ready = cond.find(d.status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True" and ready["message"] == d.status["message"] == (
        "stage 1: Job t-stage1 trains to global step 100")
    assert cond.find(d.status["conditions"], "Stage1Complete")["message"] == "stage 1 is running"  # type: ignore[index]
    assert cond.find(d.status["conditions"], "Stage2Complete")["message"] == (  # type: ignore[index]
        "stage 2 has not started")


def test_unparseable_spec_touches_nothing() -> None:
    problem = Problem("spec.dataPath", "InvalidSpec", "spec.dataPath: expected ...")
    d = decide("t", None, problem, 2, status_with(), {1: running(1)}, NOW)
    assert d.actions == () and d.status["phase"] == "Running"
    assert cond.find(d.status["conditions"], "Ready")["reason"] == "InvalidSpec"  # type: ignore[index]


def test_lifecycle_is_idempotent_and_transition_times_stay() -> None:
    spec = parse_spec(BASE)
    first = decide("t", spec, None, 1, None, {1: running(1)}, NOW)
    again = decide("t", spec, None, 1, first.status, {1: running(1)}, "2026-11-26T00:00:00Z")
    assert status_patch(first.status, again.status) == {}
    assert again.event is None


def test_transition_time_changes_only_with_status() -> None:
    spec = parse_spec(BASE)
    first = decide("t", spec, None, 1, None, {1: running(1)}, NOW)
    later = "2026-11-26T00:00:00Z"
    done = decide("t", spec, None, 1, first.status, {1: succeeded(1)}, later)
    by_type = {c["type"]: c for c in done.status["conditions"]}
    assert by_type["Stage1Complete"]["lastTransitionTime"] == later
    assert by_type["Ready"]["lastTransitionTime"] == NOW  # still True: unchanged


def test_progress_fields_follow_the_stage() -> None:
    spec = parse_spec(BASE)
    status = {**status_with(), "step": 50, "eta": "5m", "jobName": "t-stage1", "target": 100}
    d = decide("t", spec, None, 1, status, {1: running(1)}, NOW)
    assert (d.status["step"], d.status["progress"], d.status["eta"]) == (50, 50.0, "5m")
    d2 = decide("t", spec, None, 1, {**status, "step": 100}, {1: succeeded(1)}, NOW)
    assert (d2.status["stage"], d2.status["target"], d2.status["eta"]) == (2, 300, None)
    assert d2.status["progress"] == pytest.approx(33.3)
    assert status_patch(status, d2.status)["eta"] is None  # removed by the merge patch


def test_a_succeeded_stage_sets_the_step_to_its_target() -> None:
    """The last log read may lag the trainer; a Job that succeeded reached its stage's target."""
    spec = parse_spec(BASE)
    stale = {**status_with(1, stage=2), "step": 280, "target": 300}
    d = decide("t", spec, None, 1, stale, {1: succeeded(1), 2: succeeded(2)}, NOW)
    assert (d.status["phase"], d.status["step"], d.status["progress"]) == ("Succeeded", 300, 100.0)
    d1 = decide("t", spec, None, 1, {**status_with(), "step": 66}, {1: succeeded(1)}, NOW)
    assert (d1.status["stage"], d1.status["step"]) == (2, 100)


def test_stage_entries_record_times() -> None:
    spec = parse_spec(BASE)
    jobs = {1: JobState(stage=1, name="t-stage1", succeeded=True, start_time="2026-11-25T10:00:00Z",
                        completion_time="2026-11-25T11:00:00Z", target=100)}
    d = decide("t", spec, None, 1, None, jobs, NOW)
    assert d.status["stages"] == [
        {"stage": 1, "jobName": "t-stage1", "target": 100, "startTime": "2026-11-25T10:00:00Z",
         "completionTime": "2026-11-25T11:00:00Z", "outcome": "Succeeded"},
        {"stage": 2, "jobName": "t-stage2", "target": 300, "outcome": "Running"},
    ]


def test_a_queued_stage_says_why_with_kueues_words_and_posts_once_per_reason() -> None:
    settings = parse_spec({**BASE, **QUEUE})
    created = decide("t", settings, None, 3, None, {}, NOW)
    assert created.status["message"] == "stage 1 waits for Kueue admission in LocalQueue gpu-queue"
    job = {1: running(1, suspended=True, queue="gpu-queue", held=PENDING)}
    waiting = decide("t", settings, None, 3, created.status, job, NOW)
    assert waiting.status["message"] == (
        "stage 1 waits for Kueue admission in LocalQueue gpu-queue: couldn't assign flavors to pod set main: "
        "insufficient unused quota for nvidia.com/gpu in flavor default-flavor, 1 more needed")
    queued = cond.find(waiting.status["conditions"], "Queued")
    assert queued is not None and (queued["status"], queued["reason"]) == ("True", "Pending")
    assert cond.find(waiting.status["conditions"], "Ready")["message"] == waiting.status["message"]  # -o wide
    assert waiting.event == Event("Normal", "Queued", waiting.status["message"])
    assert waiting.status["eta"] is None
    # Kueue's count changes, its reason does not: no second Event.
    more = {1: running(1, suspended=True, queue="gpu-queue",
                       held=dataclasses.replace(PENDING, message=PENDING.message.replace("1 more", "2 more")))}
    again = decide("t", settings, None, 3, waiting.status, more, NOW)
    assert again.event is None and "2 more needed" in again.status["message"]
    # Admitted: Running; Queued turns False (kept: the training waited once).
    admitted = decide("t", settings, None, 3, again.status, {1: running(1, queue="gpu-queue")}, NOW)
    queued = cond.find(admitted.status["conditions"], "Queued")
    assert queued is not None and (queued["status"], queued["reason"]) == ("False", "Admitted")


def test_an_evicted_stage_says_so_with_kueues_reason() -> None:
    d = decide("t", parse_spec({**BASE, **QUEUE}), None, 3, status_with(),
               {1: running(1, suspended=True, queue="gpu-queue", held=DEACTIVATED)}, NOW)
    assert d.status["message"] == ("stage 1 was evicted by Kueue (Deactivated: The workload is deactivated); it "
                                   "resumes from its last checkpoint when admitted again")
    assert d.event is not None and (d.event.type, d.event.reason) == ("Warning", "Evicted")
    assert d.actions == ()  # never unsuspended by the operator


@pytest.mark.parametrize("suspended_by_kueue", [True, False])
def test_the_operator_never_unsuspends_a_job_in_any_path(suspended_by_kueue: bool) -> None:
    """Create, resume, retry, advance, restart: no decision ever asks to write a Job's spec.suspend."""
    held = PENDING if suspended_by_kueue else None
    stage1 = {1: running(1, suspended=True, held=held)}
    stage2 = {1: succeeded(1), 2: running(2, suspended=True, held=held)}
    cases = [(None, stage1), (status_with(), stage1), (had_job(status_with(phase="Suspended")), stage1),
             (status_with(phase="Queued"), stage1), (None, stage2), (status_with(1, stage=2), stage2),
             (had_job(status_with(1, phase="Suspended", stage=2), 2), stage2)]
    for spec in ({}, QUEUE, {"suspend": False}, {"autoAdvance": False}):
        for status, jobs in cases:
            d = decide("t", parse_spec({**BASE, **spec}), None, 3, status, jobs, NOW)
            assert d.actions == () and d.status["phase"] == "Queued", (spec, status, jobs)
