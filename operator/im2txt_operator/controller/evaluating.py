"""The poller's read of a training's evaluation pod, for status.evaluation and EvaluationFailed (whole_status).

While the training runs, and after it succeeded until each stage's final checkpoint has its figure (stage 2's is
evaluated after the training ended): one pod list and one log tail per round; reconcile writes what it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from im2txt_operator import evaluation, evaluation_status
from im2txt_operator.controller.cache import Entry, Key
from im2txt_operator.controller.context import Context
from im2txt_operator.evaluation_status import recorded_targets
from im2txt_operator.pod_reads import tail
from im2txt_operator.pods import Owner
from im2txt_operator.progress import progress_pod
from im2txt_operator.whole_status import Evaluated

TAIL_LINES = 100  # one result line per evaluated checkpoint; warnings between them


def wanted(body: Mapping[str, Any]) -> bool:
    """Is there anything to learn from the evaluation pod now? While the training runs, and after it succeeded
    until each stage that ran has its final figure. Cheap (no spec parsing): the poller asks it of every training
    each round."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if (spec.get("evaluation") or {}).get("enabled", True) is False:
        return False
    if not (status.get("evaluation") or {}).get("generation"):
        return False  # no evaluation Deployment made yet (evaluation.due): no pod to read
    if status.get("phase") == "Running":
        return True
    recorded = {e.get("stage"): e.get("finalStep") for e in (status.get("evaluation") or {}).get("stages") or ()}
    return status.get("phase") == "Succeeded" and any(recorded.get(s) != t for s, t in recorded_targets(status).items())


async def read_evaluation(ctx: Context, key: Key, entry: Entry) -> Evaluated | None:
    """The evaluation pod's results and problem, when there is anything to learn (``wanted``): one pod list and
    one log tail. None: nothing read."""
    body = entry.body
    if body is None or not wanted(body):
        return None
    namespace, name = key
    selector = ",".join(f"{k}={v}" for k, v in evaluation.selector(Owner(name, namespace, "")).items())
    pods = await ctx.kube.list_pods_labelled(namespace, selector)
    pod = progress_pod(pods)
    log = await tail(ctx.kube, namespace, pod["metadata"]["name"], evaluation.CONTAINER, TAIL_LINES) if pod else ""
    return Evaluated(evaluation_status.parse_results(log), evaluation_status.failure(pods))
