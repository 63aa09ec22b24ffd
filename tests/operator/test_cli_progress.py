"""render (offline), the progress parser and ETA, and conditions."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import pytest
import yaml
from operator_support import HERE, ROOT

from im2txt_operator import conditions as cond
from im2txt_operator.cli import render
from im2txt_operator.loss import LossUpdate, loss_patch
from im2txt_operator.progress import StepSample, eta, format_duration, last_step, percent, progress_pod


def test_render_prints_both_stages_offline() -> None:
    out = io.StringIO()
    assert render([str(HERE / "data" / "training-ufile.yaml")], out) == 0
    jobs = list(yaml.safe_load_all(out.getvalue()))
    assert [j["metadata"]["name"] for j in jobs] == ["coco-stage1", "coco-stage2", "coco-export"]
    golden = yaml.safe_load((HERE / "golden" / "training-ufile-stage2.yaml").read_text())
    assert jobs[1]["spec"] == golden["spec"]


def test_render_shows_the_tensorboard_when_enabled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((HERE / "data" / "training-ufile.yaml").read_text())
    doc["spec"]["tensorboard"] = {"enabled": True}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert render([str(path)], out) == 0
    kinds = [(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out.getvalue())]
    assert kinds == [("Job", "coco-stage1"), ("Job", "coco-stage2"), ("Job", "coco-export"),
                     ("Deployment", "coco-tensorboard"), ("Service", "coco-tensorboard")]


def test_render_stops_after_stage_1_without_auto_advance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((HERE / "data" / "training-pvc.yaml").read_text())
    doc["spec"]["autoAdvance"] = False
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert render([str(path)], out) == 0
    assert [j["metadata"]["name"] for j in yaml.safe_load_all(out.getvalue())] == ["coco-pvc-stage1"]


def test_render_cli_reports_the_bad_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: im2txt.dev/v1alpha1\nkind: Im2txtTraining\nmetadata: {name: x}\n"
                    "spec: {dataPath: 's3://b/x/', outputPath: 'pvc://o/'}\n")
    run = subprocess.run([sys.executable, "-m", "im2txt_operator", "render", str(path)], capture_output=True,
                         text=True, cwd=ROOT / "operator", env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent"})
    assert run.returncode == 2
    assert "spec.dataPath: expected ufile://<bucket>/<prefix>/ or pvc://<claim>/<sub/path>" in run.stderr


@pytest.mark.parametrize(("log", "step", "sec", "loss"), [
    ("global step 5: loss = 3.2 (1.10 sec/step)\nglobal step 6: loss = 3.1 (1.20 sec/step)\n", 6, 1.2, 3.1),
    ("INFO:tensorflow:global step 1000001: loss = nan (0.61 sec/step)", 1000001, 0.61, math.nan),
    ("global step 9: loss = inf (0.61 sec/step)", 9, 0.61, math.inf),
    ("global step 9: loss = -1.5e-03 (0.61 sec/step)", 9, 0.61, -0.0015),
    ("starting\nglobal step 7\n", 7, None, None),
])
def test_last_step(log: str, step: int, sec: float | None, loss: float | None) -> None:
    sample = last_step(log)
    assert sample is not None and (sample.step, sample.sec_per_step) == (step, sec)
    if loss is None or not math.isnan(loss):
        assert sample.loss == loss
    else:
        assert sample.loss is not None and math.isnan(sample.loss)


def test_loss_in_status_and_diverged_once() -> None:
    now = "2026-12-03T00:00:00Z"
    first = loss_patch({}, StepSample(10, 0.5, 2.345678), 1, now)
    assert first.patch == {"loss": 2.346} and first.event is None
    assert loss_patch({"loss": 2.346}, StepSample(11, 0.5, 2.3456), 1, now).patch == {}  # unchanged: no write
    nan = loss_patch({"loss": 2.346, "conditions": [{"type": "Ready", "status": "True"}]},
                     StepSample(12, 0.5, math.nan), 1, now)
    assert nan.patch["loss"] is None  # no number to show
    diverged = [c for c in nan.patch["conditions"] if c["type"] == "LossDiverged"]
    assert [c["type"] for c in nan.patch["conditions"]] == ["Ready", "LossDiverged"]
    assert diverged[0]["status"] == "True" and diverged[0]["reason"] == "NonFiniteLoss"
    assert diverged[0]["message"].startswith("global step 12: loss = nan: training diverged")
    assert nan.event is not None and (nan.event.type, nan.event.reason) == ("Warning", "LossDiverged")
    after = {"conditions": nan.patch["conditions"]}
    assert loss_patch(after, StepSample(13, 0.5, math.inf), 1, now) == LossUpdate({})  # one Event, not one per read
    recovered = loss_patch(after, StepSample(20, 0.5, 1.9), 1, now)
    assert recovered.patch["loss"] == 1.9 and recovered.event is None
    assert cond.find(recovered.patch["conditions"], "LossDiverged")["status"] == "False"  # type: ignore[index]
    assert loss_patch({}, StepSample(7, None, None), 1, now) == LossUpdate({})  # a line without a loss


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


def test_condition_keeps_transition_time_until_status_changes() -> None:
    c1 = cond.condition(None, "Ready", True, "A", "a", 1, "t1")
    c2 = cond.condition([c1], "Ready", True, "B", "b", 2, "t2")
    c3 = cond.condition([c2], "Ready", False, "C", "c", 3, "t3")
    assert (c2["lastTransitionTime"], c2["reason"], c2["observedGeneration"]) == ("t1", "B", 2)
    assert c3["lastTransitionTime"] == "t3" and c3["status"] == "False"
