"""progress: the last `global step N` of a log tail, which pod to read it from, percent and ETA."""

from __future__ import annotations

import math

import pytest

from im2txt_operator.progress import eta, format_duration, last_step, percent, progress_pod


@pytest.mark.parametrize(("log", "step", "sec", "loss"), [
    ("global step 5: loss = 3.2 (1.10 sec/step)\nglobal step 6: loss = 3.1 (1.20 sec/step)\n", 6, 1.2, 3.1),
    ("INFO:tensorflow:global step 1000001: loss = nan (0.61 sec/step)", 1000001, 0.61, math.nan),
    ("global step 9: loss = inf (0.61 sec/step)", 9, 0.61, math.inf),
    ("global step 9: loss = -1.5e-03 (0.61 sec/step)", 9, 0.61, -0.0015),
    ("starting\nglobal step 7\n", 7, None, None),
    # How the trainer ends (issue 21.4): its last line names the step and no loss; the loss is the last one logged.
    ("global step 200: loss = 1.7831 (0.420 sec/step)\nsaved model.ckpt-200\nreached global step 200\n", 200, 0.42,
     1.7831),
    ("resumed from /data/output/model.ckpt-100 at global step 100\n", 100, None, None),
])
def test_last_step(log: str, step: int, sec: float | None, loss: float | None) -> None:
    sample = last_step(log)
    assert sample is not None and (sample.step, sample.sec_per_step) == (step, sec)
    if loss is None or not math.isnan(loss):
        assert sample.loss == loss
    else:
        assert sample.loss is not None and math.isnan(sample.loss)


def test_no_step_yet() -> None:
    assert last_step("loading inception_v3.ckpt\n") is None


def _pod(name: str, phase: str, created: str, index: str | None = None) -> dict:
    annotations = {"batch.kubernetes.io/job-completion-index": index} if index is not None else {}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
            "status": {"phase": phase}}


def test_progress_is_read_from_the_newest_started_pod() -> None:
    pods = [_pod("retry", "Pending", "2026-01-01T00:03:00Z"), _pod("second", "Running", "2026-01-01T00:02:00Z"),
            _pod("first", "Failed", "2026-01-01T00:01:00Z")]
    assert progress_pod(pods)["metadata"]["name"] == "second"
    assert progress_pod([_pod("waiting", "Pending", "2026-01-01T00:00:00Z")]) is None
    assert progress_pod([]) is None


def test_progress_of_a_multi_node_stage_is_read_from_worker_0() -> None:
    # Only the chief logs "global step N"; a newer pod of another index must not hide it.
    pods = [_pod("coco-stage1-0-abcde", "Running", "2026-01-01T00:01:00Z", "0"),
            _pod("coco-stage1-1-fghij", "Running", "2026-01-01T00:02:00Z", "1"),
            _pod("coco-stage1-1-klmno", "Failed", "2026-01-01T00:03:00Z", "1")]
    assert progress_pod(pods)["metadata"]["name"] == "coco-stage1-0-abcde"
    assert progress_pod(pods[1:]) is None


def test_eta_and_percent() -> None:
    assert percent(250, 1000) == 25.0 and percent(2000, 1000) == 100.0
    assert eta(400_000, 1_000_000, 1.0) == "6d22h"
    assert eta(90, 100, None, previous=(80, 0.0), now=20.0) == "20s"  # 2 s/step from two samples
    assert eta(90, 100, None) is None and eta(100, 100, None) == "0s"
    assert [format_duration(s) for s in (5, 125, 3700, 90000)] == ["5s", "2m", "1h1m", "1d1h"]
