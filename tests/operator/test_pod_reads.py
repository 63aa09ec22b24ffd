"""pod_reads: one pod list, then the progress pod's trainer and sync log tails; observed_fields on plain data."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fake_kube import FakeKube

from im2txt_operator.api_errors import ApiException
from im2txt_operator.pod_reads import PodReads, observed_fields, read_pods
from im2txt_operator.pod_reports import SYNC
from im2txt_operator.progress import StepSample


def _pod(name: str, phase: str, created: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase}}


async def test_reads_the_newest_started_pods_trainer_and_sync_logs() -> None:
    kube = FakeKube()
    kube.pods["coco-stage1"] = [_pod("old", "Failed", "2026-01-01T00:00:00Z"),
                                _pod("new", "Running", "2026-01-01T00:01:00Z")]
    kube.logs["new", "trainer"] = "global step 41: loss = 2.5 (0.5 sec/step)\nglobal step 42: loss = 2.4 (0.5 sec/step)"
    kube.logs["new", SYNC] = "published checkpoint model.ckpt-40\n"
    reads = await read_pods(kube, "ml", "coco-stage1", syncs=True)  # type: ignore[arg-type]
    assert reads.sample == StepSample(42, 0.5, 2.4) and reads.uploaded_step == 40
    assert [c for c in kube.calls if c[0] == "read_log"] == [("read_log", "new", "trainer"), ("read_log", "new", SYNC)]


def _ended(name: str, trainer: str, sync: str) -> dict[str, Any]:
    """A pod that succeeded, with its containers' termination messages."""
    def done(container: str, message: str) -> dict[str, Any]:
        return {"name": container, "state": {"terminated": {"exitCode": 0, "message": message}}}

    pod = _pod(name, "Succeeded", "2026-01-01T00:02:00Z")
    pod["status"] |= {"containerStatuses": [done("trainer", trainer)], "initContainerStatuses": [
        done("fetch", ""), done(SYNC, sync)]}
    return pod


async def test_a_stage_that_ended_well_is_read_from_its_termination_messages_without_a_log() -> None:
    kube = FakeKube()
    kube.pods["coco-stage1"] = [_ended("done", "trainer: reached global step 100: loss = 1.4808 (0.520 sec/step)\n",
                                       "sync: published checkpoint model.ckpt-100\n")]
    reads = await read_pods(kube, "ml", "coco-stage1", syncs=True)  # type: ignore[arg-type]
    assert reads.sample == StepSample(100, 0.52, 1.4808) and reads.uploaded_step == 100
    assert [c[0] for c in kube.calls] == ["list_pods"]  # one request: no log read
    # An image that wrote no such message (an older one), or a message of another kind: the log, as before.
    kube.calls.clear()
    kube.pods["coco-stage1"] = [_ended("done", "", "sync: final upload failed after 3.0s: ...")]
    kube.logs["done", "trainer"] = "global step 99: loss = 1.5 (0.5 sec/step)\nreached global step 99\n"
    kube.logs["done", SYNC] = "published checkpoint model.ckpt-90\n"
    reads = await read_pods(kube, "ml", "coco-stage1", syncs=True)  # type: ignore[arg-type]
    assert reads.sample == StepSample(99, 0.5, 1.5) and reads.uploaded_step == 90
    assert [c for c in kube.calls if c[0] == "read_log"] == [("read_log", "done", "trainer"),
                                                             ("read_log", "done", SYNC)]


async def test_a_pvc_output_reads_no_sync_log_and_given_pods_are_not_listed_again() -> None:
    kube = FakeKube()
    pods = [_pod("p", "Running", "2026-01-01T00:00:00Z")]
    kube.logs["p", "trainer"] = "global step 7\n"
    reads = await read_pods(kube, "ml", "coco-stage1", syncs=False, pods=pods)  # type: ignore[arg-type]
    assert reads.sample is not None and reads.sample.step == 7 and reads.uploaded_step is None
    assert [c[0] for c in kube.calls] == ["read_log"]


async def test_a_container_not_started_yet_has_an_empty_log_and_other_errors_rise() -> None:
    kube = FakeKube()
    kube.pods["coco-stage1"] = [_pod("p", "Running", "2026-01-01T00:00:00Z")]  # no log: the fake answers 400
    assert (await read_pods(kube, "ml", "coco-stage1", syncs=True)).sample is None  # type: ignore[arg-type]

    async def forbidden(*_: Any) -> str:
        raise ApiException(403, "Forbidden", "pods/log is forbidden")

    kube.read_log = forbidden  # type: ignore[method-assign]
    with pytest.raises(ApiException):
        await read_pods(kube, "ml", "coco-stage1", syncs=False)  # type: ignore[arg-type]


def test_observed_fields_keep_the_final_step_and_a_finite_loss_only() -> None:
    final = observed_fields(PodReads([], StepSample(300, 0.5, 1.23456), uploaded_step=300), final=True)
    assert final == {"step": 300, "loss": 1.235, "uploadedStep": 300, "uploadError": None}
    assert "loss" not in observed_fields(PodReads([], StepSample(300, 0.5, math.nan)), final=True)
    # While the stage runs, the poller follows step and loss itself: only the upload fields come from here.
    assert observed_fields(PodReads([], StepSample(5, 0.5, 2.0)), final=False) == {"uploadError": None}
