"""Every child a training should have, declared once and keyed by role: ``render`` prints them, reconcile makes them.

Pure. A role maps to its objects in the order they are created: a multi-node stage's headless Service and
NetworkPolicy before its Job (the workers' names resolve from their first lookup, their port is closed to others
from the start), TensorBoard's Deployment before its Service. Which roles exist follows the spec: the stages it
runs, the export after stage 2 (spec.export), TensorBoard and the evaluation when enabled.
Reconcile creates a role's objects when the lifecycle says their time has come; render shows all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from im2txt_operator import evaluation, export, jobs, names, network, tensorboard
from im2txt_operator.pods import LABEL_STAGE, Owner
from im2txt_operator.spec import Settings

Manifest = dict[str, Any]


def stage(owner: Owner, settings: Settings, number: int) -> list[Manifest]:
    """A stage's objects: on several nodes its headless Service and the NetworkPolicy that admits only its own
    workers to their gRPC port, then its Job."""
    workers = [jobs.build_worker_service(owner, number), network.build_worker_policy(owner, number)] \
        if settings.num_nodes > 1 else []
    return [*workers, jobs.build_job(owner, settings, number)]


class Children(Mapping[str, list[Manifest]]):
    """Role -> objects, each role's objects built when first asked for: reconcile needs one role at a time, and
    building every manifest on every reconcile was a tenth of the operator's CPU at 20 trainings a second."""

    def __init__(self, builders: dict[str, Callable[[], list[Manifest]]]) -> None:
        self._builders, self._built = builders, {}  # type: dict[str, Callable[[], list[Manifest]]], dict[str, list[Manifest]]

    def __getitem__(self, role: str) -> list[Manifest]:
        if role not in self._built:
            self._built[role] = self._builders[role]()
        return self._built[role]

    def __contains__(self, role: object) -> bool:  # Mapping's own would build the role to find out
        return role in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


def desired(owner: Owner, settings: Settings, image_size: int | None = None,
            ran: Iterable[int] = ()) -> Children:
    """Role -> objects, for every child the spec gives the training: the stages it runs and those that ``ran``
    already (stage 2 stays, and with it the export, when autoAdvance is turned off after it started);
    ``image_size``: as stage 2's Job was stamped."""
    names.check(owner.name)
    stages = sorted({*settings.stages(), *ran})
    out: dict[str, Callable[[], list[Manifest]]] = {names.stage_role(s): partial(stage, owner, settings, s)
                                                    for s in stages}
    if settings.export and 2 in stages:
        out[names.EXPORT] = lambda: [export.build_job(owner, settings, image_size)]
    if settings.tensorboard.enabled:
        out[names.TENSORBOARD] = lambda: [tensorboard.build_deployment(owner, settings),
                                          tensorboard.build_service(owner)]
    if settings.evaluation.enabled:
        out[names.EVALUATION] = lambda: [evaluation.build_deployment(owner, settings)]
    return Children(out)


def role_of(labels: dict[str, str] | None) -> str | None:
    """The role of a Job of ours from its labels (im2txt.dev/stage, which Jobs of every version carry)."""
    value = (labels or {}).get(LABEL_STAGE)
    return {"1": names.STAGE1, "2": names.STAGE2, export.STAGE_LABEL: names.EXPORT}.get(value or "")
