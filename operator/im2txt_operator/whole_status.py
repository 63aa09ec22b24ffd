"""Pure: a training's whole status, in one place.

The lifecycle's decision (phase, stage, conditions: lifecycle.decide), what a stage's pods said when it ended, the
children's fields (export, TensorBoard, the evaluation's generation) and what the poller's last look read (step,
progress, ETA, loss and LossDiverged: running_status; status.evaluation and EvaluationFailed: evaluation_status)
become one status. Reconcile is its only caller, and writes what changed in one patch; the poller only reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator import evaluation_status
from im2txt_operator.decisions import Event
from im2txt_operator.evaluation_status import Result
from im2txt_operator.loss import loss_patch
from im2txt_operator.pod_reads import PodReads
from im2txt_operator.progress import StepSample
from im2txt_operator.running_status import Sample, running_status


@dataclass(frozen=True)
class Progress:
    """The pods of a running stage's Job, read at ``clock`` (monotonic seconds)."""

    job_name: str
    reads: PodReads
    clock: float


@dataclass(frozen=True)
class Evaluated:
    """The evaluation pod's result lines and what keeps it from evaluating (None: nothing)."""

    results: Sequence[Result]
    problem: str | None


@dataclass(frozen=True)
class Look:
    """What one look of the poller read (None: not read this time)."""

    progress: Progress | None = None
    evaluation: Evaluated | None = None


@dataclass(frozen=True)
class Whole:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)  # Warnings beside the decision's own Event
    sample: Sample | None = None  # the ETA's sample to keep


def _apply(status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A top-level merge patch applied. A None stays as the value: it means "absent", and the patch that
    decisions.status_patch makes from the whole status removes that field where the old status has it."""
    return {**status, **patch}


def whole_status(decided: Mapping[str, Any], *, ended: Mapping[str, Any], children: Mapping[str, Any], look: Look,
                 sample: Sample | None, stages: Sequence[int], targets: Mapping[int, int], generation: int | None,
                 now: str, ended_sample: StepSample | None = None) -> Whole:
    """The whole status from the decision's (``decided``), what the ended stages' pods said that the decision does
    not (``ended``: loss, upload; ``ended_sample``: the trainer's last line, whose loss may have diverged), the
    children's fields (``children``), and the poller's ``look`` (evaluated with the stages the spec runs and each
    one's target step: ``stages``, ``targets``)."""
    status = _apply(decided, {k: v for k, v in ended.items() if k not in decided})
    status = _apply(status, children)
    events: list[Event] = []
    if ended_sample is not None:  # a stage shorter than the poller's interval diverges unseen but for this line
        update = loss_patch(status, ended_sample, generation, now)
        status = _apply(status, update.patch)
        events += [update.event] if update.event is not None else []
    if look.progress is not None:
        update = running_status(status, look.progress.job_name, look.progress.reads, sample, look.progress.clock,
                                generation, now)
        status, sample = _apply(status, update.patch), update.sample
        events += [update.event] if update.event is not None else []
    if look.evaluation is not None:
        was = cond.is_true(status.get("conditions"), evaluation_status.CONDITION)
        status = _apply(status, evaluation_status.patch(status, look.evaluation.results, look.evaluation.problem,
                                                        stages, targets, generation, now))
        failing = cond.find(status.get("conditions"), evaluation_status.CONDITION)
        if failing is not None and failing["status"] == "True" and not was:
            events.append(Event("Warning", evaluation_status.CONDITION, failing["message"]))
    return Whole(status, events, sample)
