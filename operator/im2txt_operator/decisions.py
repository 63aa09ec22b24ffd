"""The vocabulary of the pure core: what a decision asks the shell to do, and the status patch that records it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A spec error the schema cannot catch (or a spec that fails parsing): names the field."""

    field: str
    reason: str  # CamelCase, e.g. SecretNotFound
    message: str  # starts with the field, e.g. "spec.credentialsSecret: Secret 'x' not found"


@dataclass(frozen=True)
class CreateJob:
    stage: int


@dataclass(frozen=True)
class DeleteJob:
    """Delete a stage's Job (that uid only) while the training is suspended: its Workload and quota go with it;
    resume creates it again, and the trainer continues from the last checkpoint. The operator never writes a Job's
    spec.suspend: Kueue owns it on a queued Job (docs/kueue.md)."""

    stage: int
    uid: str


Action = CreateJob | DeleteJob


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any]  # the whole new status; None values mean "remove"
    actions: tuple[Action, ...] = ()
    event: Event | None = None


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch for ``status`` with only what changed (None removes a key)."""
    old = old or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if value is None:
            if old.get(key) is not None:
                patch[key] = None
        elif old.get(key) != value:
            patch[key] = value
    return patch


def _without_start_times(stages: Any) -> Any:
    if not isinstance(stages, list):
        return stages
    return [{k: v for k, v in e.items() if k != "startTime"} if isinstance(e, Mapping) else e for e in stages]


def deferrable(old: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> bool:
    """Whether ``patch`` only records when a stage's Job started (``stages[].startTime``, which the Job controller
    sets just after the create). Not worth a write, and a watch event, of its own: the Job keeps it, and the next
    write (progress, the stage's end) carries it."""
    return set(patch) == {"stages"} and _without_start_times(patch["stages"]) == _without_start_times(
        (old or {}).get("stages"))
