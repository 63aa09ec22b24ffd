"""status.evaluation and the EvaluationFailed condition, from the evaluation pod's log and status. Pure.

The evaluator logs one line per evaluated checkpoint, ``evaluation: {"global_step": N, "perplexity": P, ...}``
(im2txt_trainer.eval_loop). Each result belongs to the stage whose step range holds it (stage 1 up to
spec.numberOfSteps, stage 2 above); a result at a stage's target is that stage's final figure. The status keeps,
per stage, the newest evaluated checkpoint and the final one, so a log tail that no longer shows a line loses
nothing already recorded. ``perplexity`` and ``step`` at the top are the newest result (the PPL column).

A failed evaluation never fails the training: it sets EvaluationFailed=True naming the container and its
termination message (a missing validation shard, an out-of-memory kill, an image that cannot be pulled); the next
result sets it back to False.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator.pod_reports import pod_failure

PREFIX = "evaluation: "
CONDITION = "EvaluationFailed"
WAITING_PROBLEMS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                              "ErrImageNeverPull", "CreateContainerConfigError", "RunContainerError"})


@dataclass(frozen=True)
class Result:
    step: int
    perplexity: float
    bleu4: float | None = None


def parse_results(log: str) -> list[Result]:
    """The evaluator's result lines, oldest first; a malformed line is skipped (never a wrong figure)."""
    out = []
    for line in log.splitlines():
        _, sep, text = line.partition(PREFIX)
        if not sep or not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
            step, ppl = value["global_step"], float(value["perplexity"])
            bleu = value.get("bleu4")
            bleu = None if bleu is None else float(bleu)
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0 and math.isfinite(ppl):
            out.append(Result(step, ppl, bleu))
    return out


def recorded_targets(status: Mapping[str, Any]) -> dict[int, int]:
    """Each stage's target as its Job was created with (status.stages): its last checkpoint's step."""
    return {e["stage"]: e["target"] for e in status.get("stages") or ()
            if isinstance(e.get("stage"), int) and isinstance(e.get("target"), int)}


def stage_of(step: int, stages: Sequence[int], stage1_target: int) -> int:
    """The stage a checkpoint's step belongs to, among the stages the training runs."""
    if 2 in stages and (1 not in stages or step > stage1_target):
        return 2
    return 1


def _figures(result: Result, prefix: str = "") -> dict[str, Any]:
    def key(name: str) -> str:
        return prefix + name[0].upper() + name[1:] if prefix else name

    out: dict[str, Any] = {key("step"): result.step, key("perplexity"): float(f"{result.perplexity:.6g}")}
    if result.bleu4 is not None:
        out[key("bleu4")] = float(f"{result.bleu4:.4g}")
    return out


def merge(current: Mapping[str, Any] | None, results: Sequence[Result], stages: Sequence[int],
          targets: Mapping[int, int]) -> dict[str, Any]:
    """status.evaluation with ``results`` added: per stage the newest evaluated step and its final one."""
    current = current or {}
    by_stage: dict[int, dict[str, Any]] = {int(s["stage"]): dict(s) for s in current.get("stages") or ()
                                           if isinstance(s, Mapping) and s.get("stage") in (1, 2)}
    newest = current.get("step") if isinstance(current.get("step"), int) else -1
    top = {k: current[k] for k in ("step", "perplexity", "bleu4") if k in current}
    kept = {k: v for k, v in current.items() if k not in ("step", "perplexity", "bleu4", "stages")}
    for r in results:
        stage = stage_of(r.step, stages, targets.get(1, 0))
        entry = by_stage.get(stage, {"stage": stage})
        if r.step >= entry.get("step", -1):
            finals = {k: v for k, v in entry.items() if k.startswith("final")}
            entry = {"stage": stage, **_figures(r), **finals}
        if r.step == targets.get(stage):
            entry = {**entry, **_figures(r, "final")}
        by_stage[stage] = entry
        if r.step >= newest:
            newest, top = r.step, _figures(r)
    out: dict[str, Any] = kept | top
    if by_stage:
        out["stages"] = [by_stage[s] for s in sorted(by_stage)]
    return out


def failure(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """What keeps the newest evaluation pod from evaluating: a container waiting on a problem (with its last
    crash's termination message when there was one), else None."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    pod = max(live, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", default=None)
    if pod is None:
        return None
    name = (pod.get("metadata") or {}).get("name", "")
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in status.get(key) or ():
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in WAITING_PROBLEMS:
                crashed = pod_failure(pod)
                said = (f"{crashed.reason} (exit {crashed.exit_code})" if crashed
                        else waiting.get("message") or waiting["reason"])
                return f"{said} (pod {name}, container {c.get('name', '')}: {waiting['reason']})"
    return None


def patch(status: Mapping[str, Any], results: Sequence[Result], problem: str | None, stages: Sequence[int],
          targets: Mapping[int, int], generation: int | None, now: str) -> dict[str, Any]:
    """The status fields to write (empty: nothing changed)."""
    out: dict[str, Any] = {}
    evaluation = merge(status.get("evaluation"), results, stages, targets)
    if evaluation and evaluation != status.get("evaluation"):
        out["evaluation"] = evaluation
    conditions = status.get("conditions") or []
    was = cond.is_true(conditions, CONDITION)
    if problem is not None:
        new = cond.condition(conditions, CONDITION, True, "EvaluatorFailing",
                             f"the evaluation is failing; training goes on: {problem}", generation, now)
    elif was and ("evaluation" in out or results):
        step = evaluation.get("step")
        new = cond.condition(conditions, CONDITION, False, "Evaluated", f"global step {step} evaluated",
                             generation, now)
    else:
        return out
    old = cond.find(conditions, CONDITION)
    if old is None or any(old.get(k) != new.get(k) for k in ("status", "reason", "message")):
        out["conditions"] = [dict(c) for c in conditions if c.get("type") != CONDITION] + [new]
    return out
