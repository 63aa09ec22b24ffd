"""Conditions per the Kubernetes API conventions.

``lastTransitionTime`` changes only when ``status`` changes; reason, message and observedGeneration are
refreshed in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

TYPES = ("Ready", "Stage1Complete", "Stage2Complete", "Succeeded", "Failed", "Suspended", "Queued", "Reconciling",
         "Stalled")


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for c in conditions or ():
        if c.get("type") == type_:
            return c
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"


def condition(previous: Iterable[Mapping[str, Any]] | None, type_: str, status: bool, reason: str,
              message: str, generation: int | None, now: str) -> dict[str, Any]:
    """A condition; keeps the previous lastTransitionTime when the status did not change."""
    value = "True" if status else "False"
    old = find(previous, type_)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    out: dict[str, Any] = {"type": type_, "status": value, "reason": reason, "message": message,
                           "lastTransitionTime": since or now}
    if generation is not None:
        out["observedGeneration"] = generation
    return out
