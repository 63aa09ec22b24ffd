"""export: the Job that writes a SavedModel after stage 2, and how the training reports it."""

from __future__ import annotations

from typing import Any

from im2txt_operator import jobs
from im2txt_operator.export import build_job, decide, export_args
from im2txt_operator.job_state import JobState, job_state
from im2txt_operator.jobs import Owner
from im2txt_operator.spec import parse_spec

OWNER = Owner("coco", "ml", "0b6a3c1e-1111-2222-3333-444455556666")
UFILE = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
         "credentialsSecret": "ufile-keys", "extraArgs": ["--image_size=75", "--batch_size=8"]}
PVC = {"dataPath": "pvc://data/coco", "outputPath": "pvc://runs/coco/run1"}


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return build_job(OWNER, parse_spec(spec))["spec"]["template"]["spec"]


def test_the_export_reads_the_newest_checkpoint_at_the_trained_image_size() -> None:
    assert export_args(parse_spec(UFILE)) == ["--checkpoint_path=/data/output/",
                                              "--vocab_file=/data/data/word_counts.txt",
                                              "--eval_file_pattern=/data/data/val-?????-of-00004",
                                              "--num_eval_examples=10132",
                                              "--export_dir=/data/output/export", "--image_size=75"]
    # spec.evaluation off: no figures to record beside the SavedModel.
    assert export_args(parse_spec({**UFILE, "evaluation": {"enabled": False}})) == [
        "--checkpoint_path=/data/output/", "--vocab_file=/data/data/word_counts.txt",
        "--export_dir=/data/output/export", "--image_size=75"]
    assert export_args(parse_spec(PVC))[-1] == "--export_dir=/data/output/export"  # the default size: no flag
    # The size stage 2's Job was stamped with wins over what the spec says now (extraArgs changed since).
    assert export_args(parse_spec(UFILE), 96)[-1] == "--image_size=96"
    assert build_job(OWNER, parse_spec(PVC), 96)["spec"]["template"]["spec"]["containers"][0]["args"][-1] == (
        "--image_size=96")
    stage2 = jobs.build_job(OWNER, parse_spec(UFILE), 2)
    assert stage2["metadata"]["annotations"] == {"im2txt.dev/target-step": "3000000", "im2txt.dev/image-size": "75"}
    assert job_state(stage2, 2).image_size == 75


def test_ufile_export_fetches_the_output_and_only_the_vocabulary_and_validation_data_and_uploads_through_sync(
        ) -> None:
    pod = _pod(UFILE)
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == ["vocab", "fetch", "sync"]
    assert init["vocab"]["args"] == ["--output-url=ufile://im2txt-data/coco/", "--output-dir=/data/data",
                                     "--include=word_counts.txt", "--include=val-?????-of-00004", "--once",
                                     "--no-prune"]
    assert init["fetch"]["args"] == ["--output-url=ufile://im2txt-out/run1/", "--output-dir=/data/output"]
    assert init["sync"]["restartPolicy"] == "Always"
    (export,) = pod["containers"]
    assert export["command"] == ["python", "-m", "im2txt_trainer.export"]
    assert "resources" not in export  # CPU only: no GPU asked for
    for c in [*pod["initContainers"], export]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "--final-deadline-seconds=240" in init["sync"]["args"]


def test_pvc_export_mounts_data_read_only_and_writes_the_output_claim() -> None:
    pod = _pod(PVC)
    assert [c["name"] for c in pod["initContainers"]] == ["output-check"]  # nothing to fetch or upload
    assert pod["initContainers"][0]["volumeMounts"] == [{"name": "output", "mountPath": "/data/output",
                                                        "subPath": "coco/run1"}]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data"] == {"name": "data", "mountPath": "/data/data", "readOnly": True, "subPath": "coco"}
    assert mounts["output"] == {"name": "output", "mountPath": "/data/output", "subPath": "coco/run1"}
    job = build_job(OWNER, parse_spec(PVC))
    assert job["metadata"]["name"] == "coco-export"
    assert job["metadata"]["labels"]["im2txt.dev/stage"] == "export"
    assert job["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


def _job(**state: Any) -> JobState:
    return JobState(stage=None, name="coco-export", **state)


def test_export_runs_once_after_stage_2_and_reports_each_transition_once() -> None:
    settings = parse_spec(PVC)
    assert decide(settings, "coco", False, None, None).create is False  # not before stage 2 succeeded
    start = decide(settings, "coco", True, None, None)
    assert start.create and start.status == {"jobName": "coco-export", "path": "pvc://runs/coco/run1/export/",
                                              "phase": "Running",
                                              "message": "exporting a SavedModel to pvc://runs/coco/run1/export/"
                                                         "<global step>/"}
    assert start.event is not None and start.event.reason == "ExportStarted"
    running = decide(settings, "coco", True, _job(active=1), start.status)
    assert not running.create and running.event is None and running.status == start.status
    done = decide(settings, "coco", True, _job(succeeded=True), running.status)
    assert done.status is not None and done.status["phase"] == "Succeeded"
    assert done.event is not None and done.event.reason == "Exported"
    assert decide(settings, "coco", True, _job(succeeded=True), done.status).event is None
    # Its Job deleted after a success: not run again.
    assert decide(settings, "coco", True, None, done.status).create is False


def test_a_failed_export_is_a_warning_and_deleting_its_job_retries() -> None:
    settings = parse_spec(PVC)
    failed = decide(settings, "coco", True, _job(failed=True, reason="BackoffLimitExceeded", message="3 failures"),
                    {"phase": "Running"})
    assert failed.status is not None and failed.status["phase"] == "Failed"
    assert "BackoffLimitExceeded" in failed.status["message"]
    assert failed.event is not None and (failed.event.type, failed.event.reason) == ("Warning", "ExportFailed")
    assert decide(settings, "coco", True, None, failed.status).create is True


def test_export_off_makes_no_job() -> None:
    assert decide(parse_spec({**PVC, "export": False}), "coco", True, None, None).create is False
