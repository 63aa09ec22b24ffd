"""controller.evaluating: when the poller reads a training's evaluation pod, and what reconcile then writes from it
(status.evaluation, EvaluationFailed and its one Warning Event), on an in-memory Kube."""

from __future__ import annotations

from typing import Any

from fake_kube import SPEC, FakeKube, context, training

from im2txt_operator.controller import poller
from im2txt_operator.controller.evaluating import read_evaluation, wanted
from im2txt_operator.controller.reconcile import reconcile
from im2txt_operator.whole_status import Evaluated

KEY = ("ml", "coco")
SELECTOR = "im2txt.dev/training=coco,im2txt.dev/role=evaluation,app.kubernetes.io/managed-by=im2txt-operator"
RESULT = 'evaluation: {"global_step": %d, "perplexity": %s, "final": false}\n'
STAGES = [{"stage": 1, "target": 100}, {"stage": 2, "target": 300}]


def _eval_pod(waiting: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    status: dict[str, Any] = {"name": "evaluator", "state": state}
    if waiting:
        status["lastState"] = {"terminated": {"exitCode": 1, "message": "trainer: --input_file_pattern: no files "
                                              "match '/data/data/val-?????-of-00004'"}}
    return {"metadata": {"name": "coco-evaluation-x", "creationTimestamp": "2026-12-06T20:00:00Z"},
            "status": {"phase": "Running", "containerStatuses": [status]}}


def _setup(body: dict[str, Any]) -> tuple[FakeKube, Any, list[tuple[str, str, str]], Any]:
    kube = FakeKube(body)
    ctx, events = context(kube)
    entry = ctx.cache.entry(KEY)
    entry.body = body
    return kube, ctx, events, entry


async def test_the_poller_records_figures_and_names_a_failing_evaluation() -> None:
    kube, ctx, events, entry = _setup(training())
    await reconcile(ctx, KEY)  # stage 1's Job: Running
    kube.pods["coco-stage1"] = [{"metadata": {"name": "coco-stage1-a"}, "status": {"phase": "Running"}}]
    kube.pods[SELECTOR] = [_eval_pod("CrashLoopBackOff")]
    await poller.look(ctx, KEY, entry)  # no evaluation Deployment yet: its pods are not looked at
    assert ("list_pods_labelled", "ml", SELECTOR) not in kube.calls
    kube.logs["coco-stage1-a", "trainer"] = "global step 5: loss = 3.5 (0.5 sec/step)\n"
    await poller.look(ctx, KEY, entry)  # the trainer has trained: the evaluation is made
    assert ("create", "deployments", "coco-evaluation") in kube.writes()
    writes, said = len(kube.writes()), len(events)
    kube.pods[SELECTOR] = [_eval_pod("CrashLoopBackOff")]
    await poller.look(ctx, KEY, entry)
    status = kube.trainings[KEY]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "EvaluationFailed")
    assert failed["status"] == "True" and "no files match '/data/data/val-?????-of-00004'" in failed["message"]
    assert events[said:] == [("coco", "Warning", "EvaluationFailed")] and status["phase"] == "Running"
    assert kube.writes()[writes:] == [("patch_training_status", "ml", "coco")]  # reconcile wrote it, in one patch
    await poller.look(ctx, KEY, entry)  # still failing: no second Event, no write
    assert len(events) == said + 1 and len(kube.writes()) == writes + 1
    kube.pods[SELECTOR] = [_eval_pod()]
    kube.logs["coco-evaluation-x", "evaluator"] = RESULT % (50, "40.5")
    await poller.look(ctx, KEY, entry)
    status = kube.trainings[KEY]["status"]
    assert status["evaluation"] == {"generation": 1, "step": 50, "perplexity": 40.5,
                                    "stages": [{"stage": 1, "step": 50, "perplexity": 40.5}]}
    assert next(c for c in status["conditions"] if c["type"] == "EvaluationFailed")["status"] == "False"
    assert len(events) == said + 1  # back to False: no Event
    assert entry.body["status"]["evaluation"]["step"] == 50  # the cache holds what was written


async def test_nothing_is_read_for_a_training_with_nothing_to_learn() -> None:
    for body in (training(status={"phase": "Pending"}),
                 training(spec={**SPEC, "evaluation": {"enabled": False}}, status={"phase": "Running"})):
        kube, ctx, events, entry = _setup(body)
        kube.pods[SELECTOR] = [_eval_pod("CrashLoopBackOff")]
        assert await read_evaluation(ctx, KEY, entry) is None
        assert kube.calls == [] and events == []
    kube, ctx, _, entry = _setup(training(status={"phase": "Running"}))
    entry.body = None  # deleted since the round began
    assert await read_evaluation(ctx, KEY, entry) is None
    assert kube.calls == []


async def test_a_pod_with_no_result_yet_costs_one_list_and_one_log_read() -> None:
    made = {"generation": 1}  # its Deployment is made
    kube, ctx, events, entry = _setup(training(status={"phase": "Running", "stage": 1, "evaluation": made}))
    kube.pods[SELECTOR] = [_eval_pod()]  # started; its log cannot be read yet (the fake answers 400)
    assert await read_evaluation(ctx, KEY, entry) == Evaluated([], None)
    assert kube.calls == [("list_pods_labelled", "ml", SELECTOR), ("read_log", "coco-evaluation-x", "evaluator")]
    assert events == []


def test_looked_at_while_running_and_after_success_until_every_final_figure() -> None:
    finals = [{"stage": 1, "finalStep": 100}, {"stage": 2, "finalStep": 300}]

    def body(spec: dict[str, Any] = SPEC, **status: Any) -> dict[str, Any]:
        return {"spec": spec, "status": status}

    made = {"generation": 1}  # status.evaluation once its Deployment is made
    assert wanted(body(phase="Running", evaluation=made)) and not wanted(body(phase="Pending", evaluation=made))
    assert not wanted(body(phase="Running"))  # not made yet (evaluation.due): no pod to read
    assert wanted(body(phase="Succeeded", stages=STAGES, evaluation={**made, "stages": finals[:1]}))
    assert not wanted(body(phase="Succeeded", stages=STAGES, evaluation={**made, "stages": finals}))
    assert not wanted(body(phase="Failed", stages=STAGES, evaluation=made))
    assert not wanted(body({**SPEC, "evaluation": {"enabled": False}}, phase="Running", evaluation=made))
