"""evaluation: the evaluation Deployment (pvc:// and ufile:// outputs) and keeping it, on an in-memory Kube."""

from __future__ import annotations

from typing import Any

from fake_kube import SPEC, FakeKube, context

from im2txt_operator.controller.act import ABSENT, keep_evaluation
from im2txt_operator.controller.cache import Entry
from im2txt_operator.evaluation import build_deployment, due, evaluator_args
from im2txt_operator.jobs import build_job
from im2txt_operator.pods import Owner
from im2txt_operator.spec import parse_spec

OWNER = Owner("coco", "ml", "uid-coco")
PVC = {"dataPath": "pvc://data/coco/", "outputPath": "pvc://runs/coco/run1", "numberOfSteps": 1000,
       "stage2NumberOfSteps": 3000}
UFILE = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
         "credentialsSecret": "ufile-keys", "numberOfSteps": 1000, "stage2NumberOfSteps": 3000,
         "evaluation": {"bleu": True, "bleuImages": 50, "intervalSeconds": 120}}


async def _keep(ctx: Any, entry: Entry, settings: Any, generation: int, status: dict[str, Any],
                trained: bool = True) -> Any:
    return await keep_evaluation(ctx, entry, OWNER, settings, generation, status, trained=trained)


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return build_deployment(OWNER, parse_spec(spec))["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def test_defaults_follow_the_reference_evaluate_py() -> None:
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


async def test_written_once_per_generation_not_again_after_a_restart_and_deleted_once_when_disabled() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry, on = Entry(), parse_spec(SPEC)
    # Not before the training has trained (evaluation.due): no evaluator pod beside a queued or starting stage.
    assert await _keep(ctx, entry, on, 1, {}, trained=False) == (None, None)
    assert kube.writes() == [] and entry.evaluation is None
    assert await _keep(ctx, entry, on, 1, {}) == (1, None)
    assert kube.writes() == [("create", "deployments", "coco-evaluation")]
    assert await _keep(ctx, entry, on, 1, {"evaluation": {"generation": 1}}) == (1, None)
    assert len(kube.writes()) == 1
    # A restarted operator: its cache knows nothing, status says generation 1 was written.
    assert await _keep(ctx, Entry(), on, 1, {"evaluation": {"generation": 1}}) == (1, None)
    assert len(kube.writes()) == 1
    # Once made, it is kept whatever the training does now (a stage Job deleted while suspended has no ready pod).
    assert await _keep(ctx, Entry(), on, 1, {"evaluation": {"generation": 1}}, trained=False) == (1, None)
    assert len(kube.writes()) == 1
    assert await _keep(ctx, Entry(), on, 2, {"evaluation": {"generation": 1}}) == (2, None)
    # A new generation (the spec changed while it was down): a 409 on create, then a patch of its own.
    assert [c[0] for c in kube.writes()[1:]] == ["create", "merge_patch"]
    off = parse_spec({**SPEC, "evaluation": {"enabled": False}})
    assert await _keep(ctx, entry, off, 3, {"evaluation": {"generation": 2}}) == (None, None)
    assert kube.writes()[-1] == ("delete", "deployments", "coco-evaluation") and entry.evaluation == ABSENT
    assert await _keep(ctx, entry, off, 3, {}) == (None, None) and len(kube.writes()) == 4
    fresh = Entry()  # never enabled, nothing recorded: nothing to delete
    assert await _keep(ctx, fresh, off, 1, {}) == (None, None) and len(kube.writes()) == 4


async def test_a_foreign_object_with_its_name_is_a_problem_and_left_alone() -> None:
    kube = FakeKube()
    kube.objects["deployments", "ml", "coco-evaluation"] = {
        "kind": "Deployment", "metadata": {"name": "coco-evaluation", "namespace": "ml", "uid": "theirs"},
        "spec": {"replicas": 3}}
    ctx, _ = context(kube)
    entry = Entry()
    written, problem = await _keep(ctx, entry, parse_spec(SPEC), 1, {})
    assert written is None and problem is not None and "coco-evaluation" in problem.message
    assert kube.objects["deployments", "ml", "coco-evaluation"]["spec"] == {"replicas": 3}
    assert [c[0] for c in kube.writes()] == ["create"]  # refused with 409; nothing patched


def test_due_once_the_training_has_trained() -> None:
    """A ready stage pod, a logged step, or a succeeded stage: there is (or soon is) a checkpoint to evaluate."""
    running = {"phase": "Running", "stage": 1, "stages": [{"stage": 1, "target": 100}]}
    assert not due(running, 0)  # the Job's pod is being scheduled, pulled, or queued by Kueue
    assert not due({"phase": "Queued", "stage": 1}, 0) and not due({"phase": "Failed", "stage": 1}, 0)
    assert due(running, 1)
    assert due({**running, "step": 0}, 0)
    assert due({**running, "stage": 2, "stages": [{"stage": 1, "outcome": "Succeeded"}, {"stage": 2}]}, 0)
    assert due({"phase": "Succeeded"}, 0)
