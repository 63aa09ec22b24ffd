"""running_status: one look at a running stage's pods -> the status patch and the Event, on plain data."""

from __future__ import annotations

import math
from typing import Any

from im2txt_operator.decisions import Event
from im2txt_operator.pod_reads import PodReads
from im2txt_operator.pod_reports import ContainerFailure
from im2txt_operator.progress import StepSample
from im2txt_operator.running_status import RunningUpdate, running_status

NOW = "2026-12-06T12:00:00Z"
RUNNING = {"phase": "Running", "stage": 1, "jobName": "coco-stage1", "target": 1000, "step": 100, "progress": 10.0,
           "conditions": [{"type": "Ready", "status": "True"}]}


def look(status: dict[str, Any], reads: PodReads, previous: tuple[int, float] | None = None,
         clock: float = 50.0) -> RunningUpdate:
    return running_status(status, "coco-stage1", reads, previous, clock, 3, NOW)


def test_step_progress_eta_and_loss_from_the_logged_line() -> None:
    update = look(RUNNING, PodReads([], StepSample(250, 2.0, 3.14159)))
    assert update.patch == {"step": 250, "progress": 25.0, "eta": "25m", "loss": 3.142}  # no uploadError to clear
    assert update.event is None and update.sample == (250, 50.0)


def test_only_what_changed_is_patched() -> None:
    status = {**RUNNING, "step": 250, "progress": 25.0, "eta": "25m", "loss": 3.142}
    assert look(status, PodReads([], StepSample(250, 2.0, 3.14159)), previous=(250, 10.0)).patch == {}


def test_without_sec_per_step_the_eta_comes_from_two_samples() -> None:
    first = look(RUNNING, PodReads([], StepSample(200, None)), clock=100.0)
    assert "eta" not in first.patch and first.sample == (200, 100.0)  # one sample: no rate yet
    second = look(RUNNING, PodReads([], StepSample(300, None)), previous=first.sample, clock=150.0)
    assert second.patch["eta"] == "5m" and second.sample == (300, 150.0)  # 0.5 s/step, 700 steps to go
    same = look(RUNNING, PodReads([], StepSample(300, None)), previous=second.sample, clock=170.0)
    assert same.sample == (300, 150.0)  # the step did not move: the sample keeps when it was first seen


def test_the_sync_sidecar_gives_the_uploaded_step_and_its_failure() -> None:
    failed = ContainerFailure("coco-stage1-x", "sync", 1, "sync: upload failed: 403")
    update = look({**RUNNING, "uploadError": "old"}, PodReads([], None, uploaded_step=200, upload_failure=failed))
    assert update.patch == {"uploadedStep": 200, "uploadError": "sync: upload failed: 403 (pod coco-stage1-x, exit 1)"}
    assert look({**RUNNING, "uploadError": "old"}, PodReads([])).patch == {"uploadError": None}  # fixed: cleared


def test_a_non_finite_loss_sets_loss_diverged_once_with_a_warning() -> None:
    update = look({**RUNNING, "loss": 2.5}, PodReads([], StepSample(300, 1.0, math.nan)))
    assert update.patch["loss"] is None and update.patch["step"] == 300
    (diverged,) = [c for c in update.patch["conditions"] if c["type"] == "LossDiverged"]
    assert (diverged["status"], diverged["reason"], diverged["observedGeneration"]) == ("True", "NonFiniteLoss", 3)
    assert diverged["lastTransitionTime"] == NOW
    assert update.event is not None and (update.event.type, update.event.reason) == ("Warning", "LossDiverged")
    after = {**RUNNING, "conditions": update.patch["conditions"]}
    again = look(after, PodReads([], StepSample(301, 1.0, math.inf)))
    assert again.event is None and "conditions" not in again.patch  # one Event, not one per look
    recovered = look(after, PodReads([], StepSample(400, 1.0, 1.9)))
    (back,) = [c for c in recovered.patch["conditions"] if c["type"] == "LossDiverged"]
    assert (back["status"], back["reason"], recovered.patch["loss"], recovered.event) == ("False", "LossFinite", 1.9,
                                                                                           None)


def test_nothing_is_written_unless_the_status_still_shows_that_job_running() -> None:
    reads = PodReads([], StepSample(250, 2.0, math.nan))
    for status in ({**RUNNING, "phase": "Succeeded"}, {**RUNNING, "jobName": "coco-stage2"}):
        update = look(status, reads, previous=(100, 0.0))
        assert update == RunningUpdate({}, None, (250, 50.0))  # the ETA's sample is still taken


def test_no_log_line_yet_changes_only_what_the_sidecar_says() -> None:
    assert look(RUNNING, PodReads([])) == RunningUpdate({}, None, None)
    assert look(RUNNING, PodReads([], None, uploaded_step=50)).patch == {"uploadedStep": 50}


def test_the_event_is_the_loss_modules() -> None:
    update = look(RUNNING, PodReads([], StepSample(5, 1.0, math.inf)))
    assert update.event == Event("Warning", "LossDiverged", "global step 5: loss = inf: training diverged (check the "
                                 "learning rate, the data, or resume from an earlier checkpoint)")
