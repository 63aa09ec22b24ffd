"""The export after stage 2 (spec.export): a short third Job that writes a servable SavedModel, and its status.

Pure, like jobs.py and lifecycle.py. The Job runs `python -m im2txt_trainer.export` on the output's newest
checkpoint and writes `<outputPath>/export/<global step>/` (TensorFlow Serving's versioned layout); a ufile://
output is fetched first and the export is uploaded by the same sync sidecar as a stage's checkpoints. It runs
on CPU: one forward graph, no GPU needed. The training's phase stays what stage 2 made it; status.export says
where the export stands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import names
from im2txt_operator.jobs import (
    DATA_DIR,
    LABEL_MANAGED_BY,
    LABEL_STAGE,
    LABEL_TRAINING,
    MANAGED_BY,
    OUTPUT_DIR,
    TERMINATION_GRACE_SECONDS,
    Owner,
    output_check,
    pod_failure_policy,
    pod_security,
    secure,
    sync_args,
    ufile_env,
)
from im2txt_operator.lifecycle import Event, JobState
from im2txt_operator.paths import PvcPath
from im2txt_operator.spec import GROUP, KIND, VERSION, Settings

STAGE = 3  # the export's key among a training's Jobs
STAGE_LABEL = "export"
VOCAB = "word_counts.txt"
_IMAGE_SIZE = re.compile(r"--image_size=(\d+)")


def export_url(settings: Settings) -> str:
    """Where the SavedModels go: <outputPath>/export/ (each in a folder named by its global step)."""
    base = settings.output_path.url
    return f"{base}{'' if base.endswith('/') else '/'}export/"


def export_args(settings: Settings) -> list[str]:
    args = [f"--checkpoint_path={OUTPUT_DIR}/", f"--vocab_file={DATA_DIR}/{VOCAB}", f"--export_dir={OUTPUT_DIR}/export"]
    # The model is rebuilt at the image size it was trained at (extraArgs may set it for both stages).
    sizes = [m[1] for a in settings.extra_args if (m := _IMAGE_SIZE.fullmatch(a))]
    if sizes:
        args.append(f"--image_size={sizes[-1]}")
    return args


def build_job(owner: Owner, settings: Settings) -> dict[str, Any]:
    """The export Job: the output's newest checkpoint -> <outputPath>/export/<step>/."""
    data, output = settings.data_path, settings.output_path
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    init: list[dict[str, Any]] = output_check(settings)
    if isinstance(data, PvcPath):
        mounts.append({"name": "data", "mountPath": DATA_DIR, "readOnly": True, **(
            {"subPath": data.sub_path} if data.sub_path else {})})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": data.claim}})
    else:
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        volumes.append({"name": "data", "emptyDir": {}})
        # Only the vocabulary, not the training data: a one-pass, download-only mirror of one file.
        init.append({"name": "vocab", "image": settings.image,
                     "command": ["python", "-m", "im2txt_storage", "mirror"],
                     "args": [f"--output-url={data.url}", f"--output-dir={DATA_DIR}", f"--include={VOCAB}", "--once",
                              "--no-prune"],
                     "env": ufile_env(settings), "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}]})
    output_mount: dict[str, Any] = {"name": "output", "mountPath": OUTPUT_DIR}
    if isinstance(output, PvcPath):
        if output.sub_path:
            output_mount["subPath"] = output.sub_path
        volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": output.claim}})
    else:
        volumes.append({"name": "output", "emptyDir": {}})
        init.append({"name": "fetch", "image": settings.image, "command": ["python", "-m", "im2txt_storage", "fetch"],
                     "args": [f"--output-url={output.url}", f"--output-dir={OUTPUT_DIR}"],
                     "env": ufile_env(settings), "volumeMounts": [{"name": "output", "mountPath": OUTPUT_DIR}]})
        init.append({"name": "sync", "image": settings.image, "restartPolicy": "Always",
                     "command": ["python", "-m", "im2txt_storage", "sync"],
                     "args": sync_args(settings),
                     "env": ufile_env(settings), "volumeMounts": [{"name": "output", "mountPath": OUTPUT_DIR}]})
    mounts.append(output_mount)
    exporter = {"name": "export", "image": settings.image, "workingDir": "/data",
                "command": ["python", "-m", "im2txt_trainer.export"], "args": export_args(settings),
                "volumeMounts": mounts}
    secure([*init, exporter])
    pod: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                           "automountServiceAccountToken": False, "securityContext": pod_security(settings)}
    if init:
        pod["initContainers"] = init
    pod["containers"] = [exporter]
    pod["volumes"] = volumes
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [dict(t) for t in settings.tolerations]
    labels = {LABEL_TRAINING: owner.name, LABEL_STAGE: STAGE_LABEL, LABEL_MANAGED_BY: MANAGED_BY}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": names.export_job(owner.name), "namespace": owner.namespace, "labels": labels,
                     "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name,
                                          "uid": owner.uid, "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"backoffLimit": 2, "podFailurePolicy": pod_failure_policy(init),
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }


@dataclass(frozen=True)
class ExportDecision:
    create: bool
    status: dict[str, Any] | None  # status.export (None: none)
    event: Event | None = None


def decide(settings: Settings, name: str, stage2_done: bool, job: JobState | None,
           previous: Mapping[str, Any] | None) -> ExportDecision:
    """Create the export Job once stage 2 succeeded (and spec.export is on), then follow it."""
    if job is None and (not settings.export or not stage2_done or (previous or {}).get("phase") == "Succeeded"):
        # Not (yet) to run, or done (its Job may since have been deleted: a success is not repeated; deleting a
        # failed export's Job retries it, as for a stage).
        return ExportDecision(False, dict(previous) if previous else None)
    where = f"{export_url(settings)}<global step>/"
    base = {"jobName": names.export_job(name), "path": export_url(settings)}
    if job is None:
        return ExportDecision(True, {**base, "phase": "Running", "message": f"exporting a SavedModel to {where}"},
                              Event("Normal", "ExportStarted",
                                    f"Job {base['jobName']} exports a SavedModel to {where}"))
    if job.succeeded:
        new = {**base, "phase": "Succeeded", "message": f"SavedModel written to {where}"}
        event = Event("Normal", "Exported", f"a servable SavedModel is in {export_url(settings)}")
    elif job.failed:
        new = {**base, "phase": "Failed", "message": f"Job {job.name} failed: {job.reason}: {job.message}".rstrip(": ")}
        event = Event("Warning", "ExportFailed", new["message"])
    else:
        new = {**base, "phase": "Running", "message": f"exporting a SavedModel to {where}"}
        event = None
    if previous is not None and previous.get("phase") == new["phase"]:
        event = None  # one Event per transition
    return ExportDecision(False, new, event)
