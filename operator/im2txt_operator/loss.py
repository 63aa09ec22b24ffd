"""The trainer's loss in the status: status.loss, and LossDiverged when it is NaN or infinite."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator.decisions import Event
from im2txt_operator.progress import StepSample


@dataclass(frozen=True)
class LossUpdate:
    """What a new log sample changes of status.loss and the LossDiverged condition (and the Event to post)."""

    patch: dict[str, Any]
    event: Event | None = None


def loss_patch(status: Mapping[str, Any], sample: StepSample, generation: int | None, now: str) -> LossUpdate:
    """status.loss follows the trainer's last finite loss; a NaN or infinite loss removes it (no number to show)
    and sets LossDiverged=True with one Warning Event; a finite loss later sets it back to False."""
    if sample.loss is None:
        return LossUpdate({})
    conditions = status.get("conditions") or []
    was = cond.is_true(conditions, "LossDiverged")
    if math.isfinite(sample.loss):
        patch: dict[str, Any] = {}
        loss = float(f"{sample.loss:.4g}")
        if status.get("loss") != loss:
            patch["loss"] = loss
        if was:
            patch["conditions"] = _with(conditions, cond.condition(
                conditions, "LossDiverged", False, "LossFinite", f"global step {sample.step}: loss = {loss}",
                generation, now))
        return LossUpdate(patch)
    if was:
        return LossUpdate({})
    message = (f"global step {sample.step}: loss = {sample.loss}: training diverged (check the learning rate, "
               "the data, or resume from an earlier checkpoint)")
    patch = {"loss": None, "conditions": _with(conditions, cond.condition(
        conditions, "LossDiverged", True, "NonFiniteLoss", message, generation, now))}
    return LossUpdate(patch, Event("Warning", "LossDiverged", message))


def _with(conditions: list[Mapping[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions if c.get("type") != new["type"]] + [new]
