"""Settings + stage -> the batch/v1 Job manifest of that stage (docs/contracts.md, "The Job").

Pure: the same input gives the same dict, so a restarted operator builds an identical Job and the
deterministic name makes a second create answer 409 instead of making a duplicate.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from im2txt_operator import names
from im2txt_operator.paths import PvcPath, StoragePath, UFilePath
from im2txt_operator.spec import GROUP, KIND, VERSION, Settings

MANAGED_BY = "im2txt-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TRAINING = "im2txt.dev/training"
LABEL_STAGE = "im2txt.dev/stage"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
DATA_DIR = "/data/data"
OUTPUT_DIR = "/data/output"
TRAIN_PY = "/data/train.py"


@dataclass(frozen=True)
class Owner:
    """The training a Job belongs to (for names, labels and ownerReferences)."""

    name: str
    namespace: str
    uid: str


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


def labels(owner: Owner, stage: int) -> dict[str, str]:
    return {LABEL_TRAINING: owner.name, LABEL_STAGE: str(stage), LABEL_MANAGED_BY: MANAGED_BY}


def ufile_env(settings: Settings) -> list[dict[str, Any]]:
    def key(env: str, key: str) -> dict[str, Any]:
        return {"name": env, "valueFrom": {"secretKeyRef": {"name": settings.credentials_secret, "key": key}}}

    return [
        key("UFILE_PUBLIC_KEY", "publicKey"),
        key("UFILE_PRIVATE_KEY", "privateKey"),
        {"name": "UFILE_UPLOAD_SUFFIX", "value": settings.ufile.upload_suffix},
        {"name": "UFILE_DOWNLOAD_SUFFIX", "value": settings.ufile.download_suffix},
    ]


def _mounts(settings: Settings, *, read_only_data: bool = False) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    for name, path, where in (("data", settings.data_path, DATA_DIR), ("output", settings.output_path, OUTPUT_DIR)):
        mount: dict[str, Any] = {"name": name, "mountPath": where}
        if isinstance(path, PvcPath) and path.sub_path:
            mount["subPath"] = path.sub_path
        if name == "data" and read_only_data and isinstance(path, PvcPath):
            mount["readOnly"] = True  # the operator and trainer never write the input data
        mounts.append(mount)
    return mounts


def _volume(name: str, path: StoragePath, size_limit: str | None) -> dict[str, Any]:
    if isinstance(path, PvcPath):
        return {"name": name, "persistentVolumeClaim": {"claimName": path.claim}}
    return {"name": name, "emptyDir": {"sizeLimit": size_limit} if size_limit else {}}


def output_check(settings: Settings) -> list[dict[str, Any]]:
    """The first init container of a pod that writes a pvc:// output: exits OUTPUT_NOT_WRITABLE with a termination
    message naming spec.outputPath and the fix when the trainer's user cannot write there (a volume type that does
    not apply fsGroup). Runs as that user, under the restricted Pod Security Standard like every container."""
    output = settings.output_path
    if not isinstance(output, PvcPath):
        return []  # an emptyDir: always writable
    mount: dict[str, Any] = {"name": "output", "mountPath": OUTPUT_DIR}
    if output.sub_path:
        mount["subPath"] = output.sub_path
    return [{"name": OUTPUT_CHECK, "image": settings.image, "command": ["python", "-m", "im2txt_storage.output_check"],
             "args": [f"--dir={OUTPUT_DIR}", f"--url={output.url}"], "volumeMounts": [mount]}]


def pod_failure_policy(containers: list[dict[str, Any]]) -> dict[str, Any]:
    """Evictions and preemptions do not count against backoffLimit; an unwritable output fails the Job at once
    (another pod on the same volume would fail the same way)."""
    rules: list[dict[str, Any]] = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    if any(c["name"] == OUTPUT_CHECK for c in containers):
        rules.append({"action": "FailJob", "onExitCodes": {"containerName": OUTPUT_CHECK, "operator": "In",
                                                           "values": [OUTPUT_NOT_WRITABLE]}})
    return {"rules": rules}


def sync_args(settings: Settings) -> list[str]:
    """The sync sidecar's flags: its final upload after SIGTERM ends inside the pod's grace period."""
    return [f"--output-url={settings.output_path.url}", f"--output-dir={OUTPUT_DIR}",
            f"--interval={settings.checkpoint_interval_seconds}",
            f"--final-deadline-seconds={FINAL_UPLOAD_DEADLINE_SECONDS}"]


def secure(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every container the operator makes: the restricted Pod Security Standard's container part, and a termination
    message that says why it failed (its own one-line reason, else the end of its log)."""
    for container in containers:
        container["securityContext"] = copy.deepcopy(CONTAINER_SECURITY)
        container["terminationMessagePolicy"] = TERMINATION_MESSAGE_POLICY
    return containers


def _init_containers(settings: Settings) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = output_check(settings)
    if not settings.uses_ufile:
        return out
    fetch_args = []
    if isinstance(settings.data_path, UFilePath):
        fetch_args += [f"--data-url={settings.data_path.url}", f"--data-dir={DATA_DIR}"]
    if isinstance(settings.output_path, UFilePath):
        fetch_args += [f"--output-url={settings.output_path.url}", f"--output-dir={OUTPUT_DIR}"]
    out.append({
        "name": "fetch",
        "image": settings.image,
        "command": ["python", "-m", "im2txt_storage", "fetch"],
        "args": fetch_args,
        "env": ufile_env(settings),
        "volumeMounts": _mounts(settings),
    })
    if isinstance(settings.output_path, UFilePath):
        out.append({
            "name": "sync",
            "image": settings.image,
            # A native sidecar: runs beside the trainer, uploads once more on SIGTERM after it exits.
            "restartPolicy": "Always",
            "command": ["python", "-m", "im2txt_storage", "sync"],
            "args": [*sync_args(settings), *(["--chief-only"] if settings.num_nodes > 1 else [])],
            "env": ufile_env(settings),
            "volumeMounts": [{"name": "output", "mountPath": OUTPUT_DIR}],
        })
    return out


def _trainer_resources(settings: Settings) -> dict[str, Any]:
    # Quantities are strings in the Job API (the client refuses plain numbers).
    resources: dict[str, Any] = {k: {n: str(q) for n, q in v.items()} for k, v in settings.resources.items()}
    if settings.gpus > 0:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(settings.gpus)
    return resources


WORKER_PORT = 2222  # MultiWorkerMirroredStrategy's gRPC port between the pods of a multi-node stage


def worker_hosts(owner: Owner, stage: int, num_nodes: int) -> str:
    """The workers of a multi-node stage, in completion-index order: an Indexed Job's pod i is named
    <job>-<i>, and with subdomain <job> (the headless Service) resolves as <job>-<i>.<job>."""
    job = names.stage_job(owner.name, stage)
    return ",".join(f"{job}-{i}.{job}:{WORKER_PORT}" for i in range(num_nodes))


def build_worker_service(owner: Owner, stage: int) -> dict[str, Any]:
    """The headless Service that gives a multi-node stage's pods their stable names (owned by the training)."""
    job = names.stage_job(owner.name, stage)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": job, "namespace": owner.namespace, "labels": labels(owner, stage),
                     "ownerReferences": [_owner_reference(owner)]},
        "spec": {"clusterIP": "None", "selector": {"batch.kubernetes.io/job-name": job},
                 # Workers look each other up before they are ready: their names must resolve at once.
                 "publishNotReadyAddresses": True,
                 "ports": [{"name": "worker", "port": WORKER_PORT, "targetPort": WORKER_PORT, "protocol": "TCP"}]},
    }


def _owner_reference(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


TERMINATION_GRACE_SECONDS = 300
# The sync sidecar's final upload must end before the kubelet's SIGKILL: the grace period less a minute (at least 10).
FINAL_UPLOAD_DEADLINE_SECONDS = max(10, TERMINATION_GRACE_SECONDS - 60)
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
OUTPUT_CHECK = "output-check"
OUTPUT_NOT_WRITABLE = 3  # output-check's exit code (im2txt_storage.output_check.NOT_WRITABLE)
# Every container meets the restricted Pod Security Standard; the pod-level part is in pod_security.
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                      "runAsNonRoot": True}


def pod_security(settings: Settings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        # Volumes (an output claim) are made group-writable for this group; OnRootMismatch skips the recursive
        # change on every start when the claim's root already belongs to it (large claims start fast).
        "fsGroup": settings.run_as_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_job(owner: Owner, settings: Settings, stage: int) -> dict[str, Any]:
    """The Job that runs ``stage`` (1 or 2) of the training ``owner``."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    name = names.stage_job(owner.name, stage)
    job_labels = labels(owner, stage)
    if settings.queue_name:
        job_labels[LABEL_QUEUE] = settings.queue_name
    trainer: dict[str, Any] = {
        "name": "trainer",
        "image": settings.image,
        "workingDir": "/data",
        "command": [TRAIN_PY],
        "args": trainer_args(settings, stage),
        "env": [{"name": "IM2TXT_SAVE_INTERVAL_SECS", "value": str(settings.checkpoint_interval_seconds)}],
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
    # A retried pod starts afresh and fetches the latest uploaded checkpoint, so the pod never restarts in place.
    # The grace period covers the trainer's checkpoint on SIGTERM and then the sync sidecar's final upload.
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                                # The trainer never talks to the Kubernetes API: no token in the pod.
                                "automountServiceAccountToken": False,
                                "securityContext": pod_security(settings)}
    init = _init_containers(settings)
    secure([*init, trainer])
    if init:
        pod_spec["initContainers"] = init
    pod_spec["containers"] = [trainer]
    pod_spec["volumes"] = [
        _volume("data", settings.data_path, settings.data_cache_size),
        _volume("output", settings.output_path, None),
    ]
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.num_nodes > 1:
        pod_spec["subdomain"] = name  # with the headless Service <job>: pod i is <job>-<i>.<job>
    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "podFailurePolicy": pod_failure_policy(init),
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
    job_spec["suspend"] = settings.suspend
    job_spec["template"] = {"metadata": {"labels": labels(owner, stage)}, "spec": pod_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": job_labels,
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": job_spec,
    }
