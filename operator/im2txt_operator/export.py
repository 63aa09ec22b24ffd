"""The export after stage 2 (spec.export): a short third Job that writes a servable SavedModel, and its status.

Pure, like jobs.py and lifecycle.py. The Job runs `python -m im2txt_trainer.export` on the output's newest
checkpoint and writes `<outputPath>/export/<global step>/` (TensorFlow Serving's versioned layout); a ufile://
output is fetched first and the export is uploaded by the same sync sidecar as a stage's checkpoints. It runs
on CPU: one forward graph, no GPU needed. The training's phase stays what stage 2 made it; status.export says
where the export stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator import names, pods
from im2txt_operator.decisions import Event
from im2txt_operator.job_state import JobState
from im2txt_operator.paths import PvcPath
from im2txt_operator.pods import DATA_DIR, OUTPUT_DIR, Owner
from im2txt_operator.spec import Settings

STAGE_LABEL = "export"
VOCAB = "word_counts.txt"


def export_url(settings: Settings) -> str:
    """Where the SavedModels go: <outputPath>/export/ (each in a folder named by its global step)."""
    base = settings.output_path.url
    return f"{base}{'' if base.endswith('/') else '/'}export/"


def export_args(settings: Settings, image_size: int | None = None) -> list[str]:
    """The exporter's flags. The model is rebuilt at the image size it was trained at: ``image_size`` as stamped on
    stage 2's Job (jobs.ANNOTATION_IMAGE_SIZE), else extraArgs' --image_size as the spec says now."""
    args = [f"--checkpoint_path={OUTPUT_DIR}/", f"--vocab_file={DATA_DIR}/{VOCAB}"]
    if settings.evaluation.enabled:  # the exported checkpoint's validation figures, beside the SavedModel
        args += [f"--eval_file_pattern={DATA_DIR}/{settings.evaluation.file_pattern}",
                 f"--num_eval_examples={settings.evaluation.num_examples}"]
    args.append(f"--export_dir={OUTPUT_DIR}/export")
    size = image_size if image_size is not None else settings.image_size
    if size is not None:
        args.append(f"--image_size={size}")
    return args


def build_job(owner: Owner, settings: Settings, image_size: int | None = None) -> dict[str, Any]:
    """The export Job: the output's newest checkpoint -> <outputPath>/export/<step>/."""
    data, output = settings.data_path, settings.output_path
    init: list[dict[str, Any]] = pods.output_check(settings)
    if not isinstance(data, PvcPath):
        # Only the vocabulary (and the validation records), not the training data: a one-pass, download-only mirror.
        validation = [f"--include={settings.evaluation.file_pattern}"] if settings.evaluation.enabled else []
        init.append(pods.storage(settings, "vocab", "mirror", [
            f"--output-url={data.url}", f"--output-dir={DATA_DIR}", f"--include={VOCAB}", *validation, "--once",
            "--no-prune"], [{"name": "data", "mountPath": DATA_DIR}]))
    if not isinstance(output, PvcPath):
        only_output = [{"name": "output", "mountPath": OUTPUT_DIR}]
        init.append(pods.storage(settings, "fetch", "fetch", [f"--output-url={output.url}",
                                                               f"--output-dir={OUTPUT_DIR}"], only_output))
        init.append(pods.storage(settings, "sync", "sync", pods.sync_args(settings), only_output, sidecar=True))
    exporter = {"name": "export", "image": settings.image, "workingDir": "/data",
                "command": ["python", "-m", "im2txt_trainer.export"], "args": export_args(settings, image_size),
                "volumeMounts": [pods.mount("data", data, DATA_DIR, read_only=True),
                                 pods.mount("output", output, OUTPUT_DIR)]}
    labels = pods.labels(owner, names.EXPORT, STAGE_LABEL)
    template = pods.template(settings, labels, init=init, containers=[exporter],
                             volumes=[pods.volume("data", data, read_only=True), pods.volume("output", output)])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": pods.metadata(owner, names.export_job(owner.name),
                                                                            labels),
            "spec": {"backoffLimit": 2, "podFailurePolicy": pods.pod_failure_policy(init), "template": template}}


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
