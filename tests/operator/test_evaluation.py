"""evaluation: the evaluation Deployment (pvc:// and ufile:// outputs), spec.evaluation, keeping it, and the poller's
look at it (status.evaluation, EvaluationFailed) on an in-memory Kube."""

from __future__ import annotations

from typing import Any

import pytest
from fake_kube import SPEC, FakeKube, context, training

from im2txt_operator.controller.act import ABSENT, keep_evaluation
from im2txt_operator.controller.cache import Entry
from im2txt_operator.controller.evaluating import refresh_evaluation, wanted
from im2txt_operator.evaluation import build_deployment, evaluator_args
from im2txt_operator.jobs import build_job
from im2txt_operator.pods import Owner
from im2txt_operator.spec import SpecError, parse_spec

OWNER = Owner("coco", "ml", "uid-coco")
PVC = {"dataPath": "pvc://data/coco/", "outputPath": "pvc://runs/coco/run1", "numberOfSteps": 1000,
       "stage2NumberOfSteps": 3000}
UFILE = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
         "credentialsSecret": "ufile-keys", "numberOfSteps": 1000, "stage2NumberOfSteps": 3000,
         "evaluation": {"bleu": True, "bleuImages": 50, "intervalSeconds": 120}}


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return build_deployment(OWNER, parse_spec(spec))["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def test_defaults_follow_the_reference_evaluate_py() -> None:
    ev = parse_spec(PVC).evaluation
    assert (ev.enabled, ev.file_pattern, ev.interval_seconds, ev.num_examples, ev.bleu) == (
        True, "val-?????-of-00004", 600, 10132, False)
    assert evaluator_args(parse_spec(PVC)) == [
        "--checkpoint_dir=/data/output", "--eval_dir=/data/output/eval",
        "--input_file_pattern=/data/data/val-?????-of-00004", "--final_steps=1000,3000",
        "--eval_interval_secs=600", "--num_eval_examples=10132", "--poll_secs=60", "--min_global_step=0"]
    # Only the stages the training runs have a final step; the trainer's image size is the evaluator's too.
    one = parse_spec({**PVC, "autoAdvance": False, "extraArgs": ["--image_size=75"], "checkpointIntervalSeconds": 10})
    assert "--final_steps=1000" in evaluator_args(one) and "--image_size=75" in evaluator_args(one)
    assert "--poll_secs=10" in evaluator_args(one)  # checkpoints come every 10 s: looked for as often


def test_pvc_pod_mounts_the_output_to_write_eval_and_the_data_read_only() -> None:
    pod = _pod(PVC)
    containers = _containers(pod)
    assert list(containers) == ["output-check", "evaluator"]  # an unwritable claim is named like a stage's
    evaluator = containers["evaluator"]
    assert evaluator["command"] == ["python", "-m", "im2txt_trainer.eval_loop"]
    assert evaluator["volumeMounts"] == [
        {"name": "data", "mountPath": "/data/data", "subPath": "coco", "readOnly": True},
        {"name": "output", "mountPath": "/data/output", "subPath": "coco/run1"}]
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
                              {"name": "output", "persistentVolumeClaim": {"claimName": "runs"}}]


def test_never_the_trainers_gpu_nor_its_nodes() -> None:
    spec = {**PVC, "gpus": 2, "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    pod = _pod(spec)
    evaluator = _containers(pod)["evaluator"]
    assert evaluator["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    assert {"name": "CUDA_VISIBLE_DEVICES", "value": ""} in evaluator["env"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    trainer = build_job(OWNER, parse_spec(spec), 1)["spec"]["template"]["spec"]
    assert trainer["nodeSelector"] == {"gpu": "a100"}  # the stage's pod is placed; the evaluation is not
    # A GPU only when asked for, and then visible.
    gpu = {**PVC, "evaluation": {"resources": {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}}}}
    evaluator = _containers(_pod(gpu))["evaluator"]
    assert evaluator["resources"] == {"limits": {"nvidia.com/gpu": "1", "memory": "8Gi"}}
    assert all(e["name"] != "CUDA_VISIBLE_DEVICES" for e in evaluator["env"])


def test_ufile_pod_mirrors_validation_data_and_checkpoints_and_uploads_eval() -> None:
    pod = _pod(UFILE)
    c = _containers(pod)
    assert list(c) == ["validation-data", "checkpoints", "sync", "evaluator"]
    assert c["validation-data"]["args"] == [
        "--output-url=ufile://im2txt-data/coco/", "--output-dir=/data/data", "--include=val-?????-of-00004",
        "--include=word_counts.txt", "--once", "--no-prune"]  # only what it reads, once, download-only
    assert "restartPolicy" not in c["validation-data"]
    assert c["checkpoints"]["restartPolicy"] == "Always" and c["checkpoints"]["args"] == [
        "--output-url=ufile://im2txt-out/run1/", "--output-dir=/data/output", "--include=model.ckpt-*",
        "--interval=60"]
    assert c["sync"]["restartPolicy"] == "Always"
    assert c["sync"]["args"][:2] == ["--output-url=ufile://im2txt-out/run1/eval/", "--output-dir=/data/eval"]
    args = c["evaluator"]["args"]
    assert "--eval_dir=/data/eval" in args and "--bleu" in args and "--bleu_images=50" in args
    assert "--vocab_file=/data/data/word_counts.txt" in args and "--eval_interval_secs=120" in args
    for container in c.values():  # the keys only through secretKeyRef, never a value
        assert all("value" not in e for e in container.get("env", []) if e["name"].startswith("UFILE_P"))
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"data", "output", "eval"}


def test_the_deployment_is_one_pod_owned_by_the_training_under_restricted() -> None:
    deployment = build_deployment(OWNER, parse_spec(UFILE))
    assert deployment["metadata"]["name"] == "coco-evaluation"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-coco"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    for c in _containers(pod).values():
        assert c["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("evaluation, field", [
    ("yes", "spec.evaluation"),
    ({"enable": True}, "spec.evaluation.enable"),
    ({"enabled": "true"}, "spec.evaluation.enabled"),
    ({"filePattern": "val/x-*"}, "spec.evaluation.filePattern"),
    ({"intervalSeconds": 10}, "spec.evaluation.intervalSeconds"),
    ({"numExamples": 0}, "spec.evaluation.numExamples"),
    ({"bleuImages": True}, "spec.evaluation.bleuImages"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "spec.evaluation.resources.requests.cpu"),
    ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}, "spec.evaluation.resources.requests.cpu"),
    ({"resources": {"gpus": 1}}, "spec.evaluation.resources.gpus"),
])
def test_bad_evaluation_fields_are_named(evaluation: Any, field: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec({**PVC, "evaluation": evaluation})
    assert e.value.field == field


async def test_written_once_per_generation_not_again_after_a_restart_and_deleted_once_when_disabled() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry, on = Entry(), parse_spec(SPEC)
    assert await keep_evaluation(ctx, entry, OWNER, on, 1, {}) == (1, None)
    assert kube.writes() == [("create", "deployments", "coco-evaluation")]
    assert await keep_evaluation(ctx, entry, OWNER, on, 1, {"evaluation": {"generation": 1}}) == (1, None)
    assert len(kube.writes()) == 1
    # A restarted operator: its cache knows nothing, status says generation 1 was written.
    assert await keep_evaluation(ctx, Entry(), OWNER, on, 1, {"evaluation": {"generation": 1}}) == (1, None)
    assert len(kube.writes()) == 1
    assert await keep_evaluation(ctx, Entry(), OWNER, on, 2, {"evaluation": {"generation": 1}}) == (2, None)
    # A new generation (the spec changed while it was down): a 409 on create, then a patch of its own.
    assert [c[0] for c in kube.writes()[1:]] == ["create", "merge_patch"]
    off = parse_spec({**SPEC, "evaluation": {"enabled": False}})
    assert await keep_evaluation(ctx, entry, OWNER, off, 3, {"evaluation": {"generation": 2}}) == (None, None)
    assert kube.writes()[-1] == ("delete", "deployments", "coco-evaluation") and entry.evaluation == ABSENT
    assert await keep_evaluation(ctx, entry, OWNER, off, 3, {}) == (None, None) and len(kube.writes()) == 4
    fresh = Entry()  # never enabled, nothing recorded: nothing to delete
    assert await keep_evaluation(ctx, fresh, OWNER, off, 1, {}) == (None, None) and len(kube.writes()) == 4


async def test_a_foreign_object_with_its_name_is_a_problem_and_left_alone() -> None:
    kube = FakeKube()
    kube.objects["deployments", "ml", "coco-evaluation"] = {
        "kind": "Deployment", "metadata": {"name": "coco-evaluation", "namespace": "ml", "uid": "theirs"},
        "spec": {"replicas": 3}}
    ctx, _ = context(kube)
    entry = Entry()
    written, problem = await keep_evaluation(ctx, entry, OWNER, parse_spec(SPEC), 1, {})
    assert written is None and problem is not None and "coco-evaluation" in problem.message
    assert kube.objects["deployments", "ml", "coco-evaluation"]["spec"] == {"replicas": 3}
    assert [c[0] for c in kube.writes()] == ["create"]  # refused with 409; nothing patched


SELECTOR = "im2txt.dev/training=coco,im2txt.dev/role=evaluation,app.kubernetes.io/managed-by=im2txt-operator"
RESULT = 'evaluation: {"global_step": %d, "perplexity": %s, "final": false}\n'




def _eval_pod(waiting: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    status: dict[str, Any] = {"name": "evaluator", "state": state}
    if waiting:
        status["lastState"] = {"terminated": {"exitCode": 1, "message": "trainer: --input_file_pattern: no files "
                                              "match '/data/data/val-?????-of-00004'"}}
    return {"metadata": {"name": "coco-evaluation-x", "creationTimestamp": "2026-12-06T20:00:00Z"},
            "status": {"phase": "Running", "containerStatuses": [status]}}


async def test_the_poller_records_figures_and_names_a_failing_evaluation() -> None:
    body = training(status={"phase": "Running", "stage": 1})
    kube = FakeKube(body)
    ctx, events = context(kube)
    entry = ctx.cache.entry(("ml", "coco"))
    entry.body = body
    kube.pods[SELECTOR] = [_eval_pod("CrashLoopBackOff")]
    await refresh_evaluation(ctx, ("ml", "coco"), entry)
    status = kube.trainings["ml", "coco"]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "EvaluationFailed")
    assert failed["status"] == "True" and "no files match '/data/data/val-?????-of-00004'" in failed["message"]
    assert events == [("coco", "Warning", "EvaluationFailed")] and status["phase"] == "Running"
    await refresh_evaluation(ctx, ("ml", "coco"), entry)  # still failing: no second Event, no write
    assert len(events) == 1 and len(kube.writes()) == 1
    kube.pods[SELECTOR] = [_eval_pod()]
    kube.logs["coco-evaluation-x", "evaluator"] = RESULT % (50, "40.5")
    await refresh_evaluation(ctx, ("ml", "coco"), entry)
    status = kube.trainings["ml", "coco"]["status"]
    assert status["evaluation"] == {"step": 50, "perplexity": 40.5,
                                    "stages": [{"stage": 1, "step": 50, "perplexity": 40.5}]}
    assert next(c for c in status["conditions"] if c["type"] == "EvaluationFailed")["status"] == "False"


def test_looked_at_while_running_and_after_success_until_every_final_figure() -> None:
    stages = [{"stage": 1, "target": 100}, {"stage": 2, "target": 300}]
    finals = [{"stage": 1, "finalStep": 100}, {"stage": 2, "finalStep": 300}]

    def body(spec: dict[str, Any] = SPEC, **status: Any) -> dict[str, Any]:
        return {"spec": spec, "status": status}

    assert wanted(body(phase="Running")) and not wanted(body(phase="Pending"))
    assert wanted(body(phase="Succeeded", stages=stages, evaluation={"stages": finals[:1]}))
    assert not wanted(body(phase="Succeeded", stages=stages, evaluation={"stages": finals}))
    assert not wanted(body(phase="Failed", stages=stages))
    assert not wanted(body({**SPEC, "evaluation": {"enabled": False}}, phase="Running"))
