"""Settings + stage -> the batch/v1 Job manifest of that stage (docs/contracts.md, "The Job"), on pods.template.

Pure: the same input gives the same dict, so a restarted operator builds an identical Job and the
deterministic name makes a second create answer 409 instead of making a duplicate.
"""

from __future__ import annotations

from typing import Any

from im2txt_operator import names, pods
from im2txt_operator.job_state import ANNOTATION_IMAGE_SIZE, ANNOTATION_TARGET, LABEL_QUEUE
from im2txt_operator.paths import UFilePath
from im2txt_operator.pods import DATA_DIR, OUTPUT_DIR, Owner
from im2txt_operator.spec import Settings

TRAIN_PY = "/data/train.py"


def trainer_args(settings: Settings, stage: int) -> list[str]:
    """The UAI command's flags for a stage, then extraArgs (command is ["/data/train.py"])."""
    args = [f"--input_file_pattern={DATA_DIR}/{settings.input_file_pattern}"]
    if stage == 1:
        args.append(f"--inception_checkpoint_file={DATA_DIR}/{settings.inception_checkpoint_file}")
    args += [f"--train_dir={OUTPUT_DIR}/", f"--number_of_steps={settings.target(stage)}"]
    if stage == 2:
        args.append("--train_inception=True")
    return args + list(settings.extra_args)


def command_line(settings: Settings, stage: int) -> str:
    return " ".join([TRAIN_PY, *trainer_args(settings, stage)])


def stamps(settings: Settings, stage: int) -> dict[str, str]:
    """Facts the controller reads back from a stage's Job (lifecycle.job_state, export), as annotations."""
    out = {ANNOTATION_TARGET: str(settings.target(stage))}
    if settings.image_size is not None:
        out[ANNOTATION_IMAGE_SIZE] = str(settings.image_size)
    return out


def _mounts(settings: Settings, *, read_only_data: bool = False) -> list[dict[str, Any]]:
    return [pods.mount("data", settings.data_path, DATA_DIR, read_only=read_only_data),
            pods.mount("output", settings.output_path, OUTPUT_DIR)]


def _init_containers(settings: Settings) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = pods.output_check(settings)
    if not settings.uses_ufile:
        return out
    fetch_args = []
    if isinstance(settings.data_path, UFilePath):
        fetch_args += [f"--data-url={settings.data_path.url}", f"--data-dir={DATA_DIR}"]
    if isinstance(settings.output_path, UFilePath):
        fetch_args += [f"--output-url={settings.output_path.url}", f"--output-dir={OUTPUT_DIR}"]
    out.append(pods.storage(settings, "fetch", "fetch", fetch_args, _mounts(settings)))
    if isinstance(settings.output_path, UFilePath):
        # A native sidecar: runs beside the trainer, uploads once more on SIGTERM after it exits.
        out.append(pods.storage(settings, "sync", "sync", [
            *pods.sync_args(settings), *(["--chief-only"] if settings.num_nodes > 1 else [])],
            [{"name": "output", "mountPath": OUTPUT_DIR}], sidecar=True))
    return out


# The trainer's requests when spec.resources names neither a request nor a limit of that resource, per GPU (at
# least one): what keeps one GPU fed and holds the compiled model (docs/trainer.md: 1.3-5 GiB peak; tf.data
# decodes JPEGs on every core it gets). Requests only: Kueue charges them to a ClusterQueue's cpu/memory quota
# and the scheduler places by them; no default limit kills or throttles a training.
TRAINER_CPU_PER_GPU = 4
TRAINER_MEMORY_GI_PER_GPU = 8
# A CPU-only training (gpus: 0: a try-out, a test, the demo) asks for what fits beside the rest on a small node: a
# 2-core node could never schedule one GPU's share (the real-node tier's trainer stayed Pending, Insufficient cpu).
TRAINER_CPU_ONLY = {"cpu": "1", "memory": "2Gi"}


def trainer_requests(settings: Settings) -> dict[str, str]:
    """The default cpu and memory requests of the trainer container that spec.resources leaves open."""
    named = {n for v in settings.resources.values() for n in v}
    defaults = TRAINER_CPU_ONLY if settings.gpus == 0 else {
        "cpu": str(TRAINER_CPU_PER_GPU * settings.gpus), "memory": f"{TRAINER_MEMORY_GI_PER_GPU * settings.gpus}Gi"}
    return {n: q for n, q in defaults.items() if n not in named}


def run_id(owner: Owner) -> dict[str, str]:
    """Whose checkpoints the trainer and sync may prune: the training's uid (im2txt_storage.owners)."""
    return {"name": "IM2TXT_RUN_ID", "value": owner.uid}


def _trainer_resources(settings: Settings) -> dict[str, Any]:
    # Quantities are strings in the Job API (the client refuses plain numbers).
    resources: dict[str, Any] = {k: {n: str(q) for n, q in v.items()} for k, v in settings.resources.items()}
    if defaults := trainer_requests(settings):
        resources["requests"] = defaults | resources.get("requests", {})
    if settings.gpus > 0:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(settings.gpus)
    return resources


WORKER_PORT = 2222  # MultiWorkerMirroredStrategy's gRPC port between the pods of a multi-node stage
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def worker_hosts(owner: Owner, stage: int, num_nodes: int) -> str:
    """The workers of a multi-node stage, in completion-index order: an Indexed Job's pod i is named
    <job>-<i>, and with subdomain <job> (the headless Service) resolves as <job>-<i>.<job>."""
    job = names.stage_job(owner.name, stage)
    return ",".join(f"{job}-{i}.{job}:{WORKER_PORT}" for i in range(num_nodes))


def workers(job: str) -> dict[str, str]:
    """The labels that select a stage's pods (set by the Job controller on every pod of the Job)."""
    return {JOB_NAME_LABEL: job}


def stage_metadata(owner: Owner, stage: int) -> dict[str, Any]:
    """The metadata of a child named after a stage's Job (its headless Service, its NetworkPolicy)."""
    return pods.metadata(owner, names.stage_job(owner.name, stage),
                         pods.labels(owner, names.stage_role(stage), str(stage)))


def build_worker_service(owner: Owner, stage: int) -> dict[str, Any]:
    """The headless Service that gives a multi-node stage's pods their stable names (owned by the training)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": stage_metadata(owner, stage),
        "spec": {"clusterIP": "None", "selector": workers(names.stage_job(owner.name, stage)),
                 # Workers look each other up before they are ready: their names must resolve at once.
                 "publishNotReadyAddresses": True,
                 "ports": [{"name": "worker", "port": WORKER_PORT, "targetPort": WORKER_PORT, "protocol": "TCP"}]},
    }


def build_job(owner: Owner, settings: Settings, stage: int) -> dict[str, Any]:
    """The Job that runs ``stage`` (1 or 2) of the training ``owner``."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    name = names.stage_job(owner.name, stage)
    job_labels = pods.labels(owner, names.stage_role(stage), str(stage))
    if settings.queue_name:
        job_labels[LABEL_QUEUE] = settings.queue_name
    trainer: dict[str, Any] = {
        "name": "trainer",
        "image": settings.image,
        "workingDir": "/data",
        "command": [TRAIN_PY],
        "args": trainer_args(settings, stage),
        "env": [{"name": "IM2TXT_SAVE_INTERVAL_SECS", "value": str(settings.checkpoint_interval_seconds)},
                run_id(owner)],
        "volumeMounts": _mounts(settings, read_only_data=True),
    }
    if settings.num_nodes > 1:
        # The trainer builds TF_CONFIG from these and JOB_COMPLETION_INDEX (set by Kubernetes in Indexed Jobs).
        trainer["env"].append({"name": "IM2TXT_WORKER_HOSTS",
                               "value": worker_hosts(owner, stage, settings.num_nodes)})
        trainer["ports"] = [{"name": "worker", "containerPort": WORKER_PORT, "protocol": "TCP"}]
    resources = _trainer_resources(settings)
    if resources:
        trainer["resources"] = resources
    init = _init_containers(settings)
    for container in init:
        if container["name"] == "sync":  # prunes UFile: only bundles the ledger gives this training
            container["env"].append(run_id(owner))
    role = names.stage_role(stage)
    template = pods.template(settings, pods.labels(owner, role, str(stage)), init=init, containers=[trainer], volumes=[
        pods.volume("data", settings.data_path, settings.data_cache_size, read_only=True),
        pods.volume("output", settings.output_path)])
    pod_spec = template["spec"]
    if settings.num_nodes > 1:
        pod_spec["subdomain"] = name  # with the headless Service <job>: pod i is <job>-<i>.<job>
    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "podFailurePolicy": pods.pod_failure_policy(init),
    }
    if settings.num_nodes > 1:
        # One pod per node, all at once. One worker's failure breaks the collective of all of them: each fails and
        # is re-created, and the new set resumes from the last checkpoint. backoffLimit counts failed pods, so
        # an attempt of the stage may cost up to numNodes of it: it is scaled to keep "retries per stage".
        job_spec |= {"completionMode": "Indexed", "completions": settings.num_nodes,
                     "parallelism": settings.num_nodes,
                     "backoffLimit": settings.backoff_limit * settings.num_nodes}
    if settings.max_run_seconds is not None:
        job_spec["activeDeadlineSeconds"] = settings.max_run_seconds
    # A queued Job starts suspended and Kueue alone unsuspends it (on admission); the operator never writes
    # spec.suspend after the create (docs/kueue.md). A training suspended by the user has no stage Job at all.
    job_spec["suspend"] = bool(settings.queue_name)
    job_spec["template"] = template
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": pods.metadata(owner, name, job_labels, stamps(settings, stage)), "spec": job_spec}
