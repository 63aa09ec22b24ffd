"""Settings -> the evaluation Deployment of a training (spec.evaluation): the reference evaluate.py beside training.

Pure, like tensorboard.py. One pod per training, for its whole life, running ``python -m im2txt_trainer.eval_loop``
on the training's output: every new checkpoint (at most one per ``intervalSeconds``) and each stage's last one
(``--final_steps``: the stages' targets, evaluated first whenever on disk) get a validation perplexity (and
BLEU-4 when asked), written as summaries to the output's ``eval/`` folder, where TensorBoard shows them as the
run ``eval``, and as one log line each, which the operator reads into status.evaluation.

Why its own pod and not a sidecar of the stage's Job:
- it never shares the trainer's GPU or CPUs: it has its own resources (CPU only by default: the GPU stays the
  trainer's) and is placed on any node, not the training's GPU nodes (no nodeSelector, no tolerations);
- it outlives each stage: stage 1's last checkpoint is evaluated while stage 2 already runs (a sidecar would hold
  stage 1's pod, and so stage 2's start, until it finished), and stage 2's after the training succeeded;
- a crash or an out-of-memory kill restarts this pod only, never a stage's pod (whose restart costs a checkpoint
  interval), so a broken evaluation leaves the training running and shows as the EvaluationFailed condition;
- the same pod serves pvc:// and ufile:// outputs alike, since the output is where each stage leaves its
  checkpoints: a pvc:// output is mounted (read-write, for eval/; like TensorBoard's mount, a ReadWriteOnce claim
  puts it on the trainer's node); a ufile:// output's checkpoints are mirrored into an emptyDir by a download-only
  sidecar (``im2txt_storage mirror --include=model.ckpt-*``) and eval/ is uploaded by a ``sync`` sidecar.
Validation data: a pvc:// data path is mounted read-only; a ufile:// one is mirrored once, only the files matching
``filePattern`` (and word_counts.txt for BLEU), by an init container.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from im2txt_operator import names, pods
from im2txt_operator.export import VOCAB
from im2txt_operator.paths import PvcPath, UFilePath
from im2txt_operator.pods import DATA_DIR, OUTPUT_DIR, Owner
from im2txt_operator.spec import Settings

COMPONENT = "evaluation"
CONTAINER = "evaluator"
EVAL_DIR = "/data/eval"  # a ufile:// output's eval/ folder (uploaded); a pvc:// output has it at OUTPUT_DIR/eval
CHECKPOINT_GLOB = "model.ckpt-*"
CHECKPOINT_CACHE = "16Gi"  # five checkpoints of stage 2 (about 200 MB each) and room to spare
LOOK_SECONDS = 60  # at most this long between two looks for a new checkpoint (mirror passes, eval_loop polls)


def due(status: Mapping[str, Any], ready_pods: int) -> bool:
    """Whether a training has trained, so its evaluation pod has (or soon has) a checkpoint to evaluate: a stage's
    pod is ready (its trainer runs), the trainer logged a step, or a stage succeeded. Before that the pod would
    only wait, beside a training Kueue may hold for hours (its pod outside the queue's quota), and its Deployment,
    ReplicaSet and pod would be made in the same moment as the stage's Job."""
    if ready_pods > 0 or isinstance(status.get("step"), int) or status.get("phase") == "Succeeded":
        return True
    return any(e.get("outcome") == "Succeeded" for e in status.get("stages") or ())


def look_interval(settings: Settings) -> int:
    """How often to look for a new checkpoint: as often as one is saved, at most LOOK_SECONDS apart (the trainer
    keeps its newest five, so a stage's last checkpoint stays for five save intervals of the next stage)."""
    return min(LOOK_SECONDS, settings.checkpoint_interval_seconds)


def eval_dir(settings: Settings) -> str:
    return f"{OUTPUT_DIR}/eval" if isinstance(settings.output_path, PvcPath) else EVAL_DIR


def eval_url(settings: Settings) -> str:
    """A ufile:// output's eval folder: <outputPath>/eval/ (TensorBoard's mirror shows it as the run ``eval``)."""
    base = settings.output_path.url
    return f"{base}{'' if base.endswith('/') else '/'}eval/"


def final_steps(settings: Settings) -> list[int]:
    """The last step of each stage the training runs: evaluated once more, and first."""
    return [settings.target(s) for s in settings.stages()]


def evaluator_args(settings: Settings) -> list[str]:
    ev = settings.evaluation
    args = [f"--checkpoint_dir={OUTPUT_DIR}", f"--eval_dir={eval_dir(settings)}",
            f"--input_file_pattern={DATA_DIR}/{ev.file_pattern}",
            f"--final_steps={','.join(map(str, final_steps(settings)))}",
            f"--eval_interval_secs={ev.interval_seconds}", f"--num_eval_examples={ev.num_examples}",
            f"--poll_secs={look_interval(settings)}",
            "--min_global_step=0"]  # the operator's checkpoints come every checkpointIntervalSeconds: all count
    if settings.image_size is not None:
        args.append(f"--image_size={settings.image_size}")
    if ev.bleu:
        args += ["--bleu", f"--vocab_file={DATA_DIR}/{VOCAB}", f"--bleu_images={ev.bleu_images}"]
    return args


def _evaluator(settings: Settings) -> dict[str, Any]:
    ev = settings.evaluation
    resources = {k: {n: str(q) for n, q in v.items()} for k, v in ev.resources.items()}
    env = [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}]
    if not any(n.endswith("/gpu") for n in resources.get("limits", {})):
        env.append({"name": "CUDA_VISIBLE_DEVICES", "value": ""})  # never a GPU the pod was not given
    mounts = [pods.mount("data", settings.data_path, DATA_DIR, read_only=True),
              pods.mount("output", settings.output_path, OUTPUT_DIR)]
    if isinstance(settings.output_path, UFilePath):
        mounts.append({"name": "eval", "mountPath": EVAL_DIR})
    return {"name": CONTAINER, "image": settings.image, "workingDir": "/data",
            "command": ["python", "-m", "im2txt_trainer.eval_loop"], "args": evaluator_args(settings), "env": env,
            "resources": resources, "volumeMounts": mounts}


def _storage(settings: Settings) -> list[dict[str, Any]]:
    """The init containers and sidecars that bring a ufile:// path's files in and the eval folder out."""
    data, output, ev = settings.data_path, settings.output_path, settings.evaluation
    init: list[dict[str, Any]] = pods.output_check(settings)
    if isinstance(data, UFilePath):
        include = [f"--include={ev.file_pattern}", *([f"--include={VOCAB}"] if ev.bleu else [])]
        init.append(pods.storage(settings, "validation-data", "mirror", [
            f"--output-url={data.url}", f"--output-dir={DATA_DIR}", *include, "--once", "--no-prune"],
            [{"name": "data", "mountPath": DATA_DIR}]))
    if isinstance(output, UFilePath):
        # Download-only: the checkpoints the stages' sync sidecars publish; pruned as the trainer prunes them.
        init.append(pods.storage(settings, "checkpoints", "mirror", [
            f"--output-url={output.url}", f"--output-dir={OUTPUT_DIR}", f"--include={CHECKPOINT_GLOB}",
            f"--interval={look_interval(settings)}"], [{"name": "output", "mountPath": OUTPUT_DIR}], sidecar=True))
        init.append(pods.storage(settings, "sync", "sync", [
            f"--output-url={eval_url(settings)}", f"--output-dir={EVAL_DIR}", f"--interval={LOOK_SECONDS}",
            f"--final-deadline-seconds={pods.FINAL_UPLOAD_DEADLINE_SECONDS}"],
            [{"name": "eval", "mountPath": EVAL_DIR}], sidecar=True))
    return init


def _labels(owner: Owner) -> dict[str, str]:
    return {**pods.labels(owner, names.EVALUATION), "app.kubernetes.io/component": COMPONENT}


def selector(owner: Owner) -> dict[str, str]:
    """What the Deployment selects, and how the operator finds its pod (a Deployment's selector never changes)."""
    return {pods.LABEL_TRAINING: owner.name, pods.LABEL_ROLE: names.EVALUATION,
            pods.LABEL_MANAGED_BY: pods.MANAGED_BY}


def build_deployment(owner: Owner, settings: Settings) -> dict[str, Any]:
    data, output = settings.data_path, settings.output_path
    volumes = [pods.volume("data", data, settings.data_cache_size, read_only=True),
               pods.volume("output", output, CHECKPOINT_CACHE)]
    if isinstance(output, UFilePath):
        volumes.append({"name": "eval", "emptyDir": {"sizeLimit": "1Gi"}})
    template = pods.template(settings, _labels(owner), init=_storage(settings), containers=[_evaluator(settings)],
                             volumes=volumes, job=False, place=False)
    # The pod's grace period covers the eval sidecar's last upload after SIGTERM.
    template["spec"]["terminationGracePeriodSeconds"] = pods.TERMINATION_GRACE_SECONDS
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.metadata(owner, names.evaluation(owner.name), _labels(owner)),
        # Recreate: two evaluators would write the same eval folder; one pod at a time.
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector(owner)},
                 "template": template},
    }
