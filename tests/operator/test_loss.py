"""loss: status.loss from one log sample, and LossDiverged once when it is not a number."""

from __future__ import annotations

import math

from im2txt_operator import conditions as cond
from im2txt_operator.loss import LossUpdate, loss_patch
from im2txt_operator.progress import StepSample


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
