"""Step progress from the trainer's log: ``global step N: loss = L (S sec/step)``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_STEP = re.compile(r"global step (\d+)(?:: loss = ([-+.\deEnaifNAIF]+) \(([\d.]+) sec/step\))?")


@dataclass(frozen=True)
class StepSample:
    step: int
    sec_per_step: float | None  # as logged by the trainer, when present
    loss: float | None = None  # the total loss of that step (nan or inf when training diverged)


def last_step(log: str) -> StepSample | None:
    """The last "global step N" in a log tail, with the loss and sec/step of the last line that logged them: the
    trainer's closing "reached global step N" (and a resume's "at global step N") log none, and the loss shown
    after a stage ends is the last one it logged."""
    found = logged = None
    for found in _STEP.finditer(log):
        if found[2]:
            logged = found
    if found is None:
        return None
    sec = float(logged[3]) if logged is not None and logged[3] else None
    try:
        loss = float(logged[2]) if logged is not None else None
    except ValueError:  # not a number the trainer would print: no loss rather than a wrong one
        loss = None
    return StepSample(step=int(found[1]), sec_per_step=sec, loss=loss)


INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
_STARTED = ("Running", "Succeeded", "Failed")


def progress_pod(pods: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose trainer log carries the progress: the newest started one, and in a multi-node stage only
    worker 0's (the chief alone logs "global step N"; an Indexed Job's other pods never do)."""
    def is_chief(pod: dict[str, Any]) -> bool:
        index = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION)
        return index in (None, "0")

    started = [p for p in pods if (p.get("status") or {}).get("phase") in _STARTED and is_chief(p)]
    return max(started, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def percent(step: int, target: int) -> float:
    if target <= 0:
        return 0.0
    return round(min(100.0, 100.0 * step / target), 1)


def format_duration(seconds: float) -> str:
    """Compact duration for kubectl columns: 45s, 12m, 3h12m, 2d4h."""
    s = max(0, round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def eta(step: int, target: int, sec_per_step: float | None,
        previous: tuple[int, float] | None = None, now: float | None = None) -> str | None:
    """Remaining time to ``target``: from the logged sec/step, else from the rate between two samples."""
    if step >= target:
        return "0s"
    rate = sec_per_step
    if rate is None and previous is not None and now is not None:
        prev_step, prev_time = previous
        if step > prev_step and now > prev_time:
            rate = (now - prev_time) / (step - prev_step)
    if rate is None or rate <= 0:
        return None
    return format_duration((target - step) * rate)

