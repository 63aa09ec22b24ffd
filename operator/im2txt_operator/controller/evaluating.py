"""The poller's look at a training's evaluation pod: status.evaluation and EvaluationFailed (evaluation_status).

While the training runs, and after it succeeded until each stage's final checkpoint has its figure (stage 2's is
evaluated after the training ended): one pod list and one log tail per round, at most one patch and one Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im2txt_operator import conditions as cond
from im2txt_operator import evaluation, evaluation_status
from im2txt_operator.controller.cache import Entry, Key
from im2txt_operator.controller.context import Context
from im2txt_operator.decisions import Event
from im2txt_operator.pod_reads import tail
from im2txt_operator.pods import Owner
from im2txt_operator.progress import progress_pod
from im2txt_operator.spec import SpecError, parse_spec

TAIL_LINES = 100  # one result line per evaluated checkpoint; warnings between them


def _targets(status: Mapping[str, Any]) -> dict[int, int]:
    """Each stage's target as its Job was created with (status.stages): its last checkpoint's step."""
    return {e["stage"]: e["target"] for e in status.get("stages") or ()
            if isinstance(e.get("stage"), int) and isinstance(e.get("target"), int)}


def wanted(body: Mapping[str, Any]) -> bool:
    """Is there anything to learn from the evaluation pod now? While the training runs, and after it succeeded
    until each stage that ran has its final figure. Cheap (no spec parsing): the poller asks it of every training
    each round."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if (spec.get("evaluation") or {}).get("enabled", True) is False:
        return False
    if status.get("phase") == "Running":
        return True
    recorded = {e.get("stage"): e.get("finalStep") for e in (status.get("evaluation") or {}).get("stages") or ()}
    return status.get("phase") == "Succeeded" and any(recorded.get(s) != t for s, t in _targets(status).items())


async def refresh_evaluation(ctx: Context, key: Key, entry: Entry) -> None:
    body = entry.body
    if body is None:
        return
    namespace, name = key
    if not wanted(body):
        return
    try:
        settings = parse_spec(body.get("spec"), ctx.ufile_domains, insecure_http=ctx.ufile_insecure_http)
    except SpecError:
        return  # reconcile reports it
    selector = ",".join(f"{k}={v}" for k, v in evaluation.selector(Owner(name, namespace, "")).items())
    pods = await ctx.kube.list_pods_labelled(namespace, selector)
    pod = progress_pod(pods)
    log = await tail(ctx.kube, namespace, pod["metadata"]["name"], evaluation.CONTAINER, TAIL_LINES) if pod else ""
    results, problem = evaluation_status.parse_results(log), evaluation_status.failure(pods)
    async with entry.lock:
        current = entry.body or {}
        status = current.get("status") or {}
        targets = {s: settings.target(s) for s in (1, 2)} | _targets(status)
        patch = evaluation_status.patch(status, results, problem, settings.stages(), targets,
                                        current.get("metadata", {}).get("generation"), ctx.now())
        if not patch:
            return
        entry.wrote(await ctx.kube.patch_training_status(namespace, name, patch))
    now_failing = cond.find(patch.get("conditions"), evaluation_status.CONDITION)
    if now_failing and now_failing["status"] == "True" and not cond.is_true(status.get("conditions"),
                                                                           evaluation_status.CONDITION):
        ctx.post(entry.body or current, Event("Warning", evaluation_status.CONDITION, now_failing["message"]),
                 status.get("stage"), logging.WARNING)
