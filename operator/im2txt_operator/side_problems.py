"""A problem with a child the stages do not wait for (TensorBoard, the export Job): Ready=False naming it, while
the phase, the stages and the rest of the decision stay as they are. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator.decisions import Decision, Event, Problem


def flag(decision: Decision, previous: Mapping[str, Any], problem: Problem, generation: int | None,
         now: str) -> tuple[Decision, Event | None]:
    """The decision with Ready=False for ``problem``, and a Warning Event when Ready did not say so already (the
    decision's own Event is kept, unless it announced that Ready came back)."""
    prev = previous.get("conditions") or []
    ready = cond.condition(prev, "Ready", False, problem.reason, problem.message, generation, now)
    conditions = [ready if c.get("type") == "Ready" else c for c in decision.status.get("conditions") or ()]
    event = None if decision.event is not None and decision.event.reason == "SpecValid" else decision.event
    was = cond.find(prev, "Ready") or {}
    warn = (was.get("status"), was.get("reason"), was.get("message")) != ("False", problem.reason, problem.message)
    return (replace(decision, status={**decision.status, "conditions": conditions}, event=event),
            Event("Warning", problem.reason, problem.message) if warn else None)
