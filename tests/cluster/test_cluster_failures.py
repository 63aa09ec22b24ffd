"""Why a stage failed, in its containers' own words, on a real API server and the real Job controller.

The tests play the kubelet: a container that fails leaves its termination message in the pod's status (the trainer
writes `trainer: <reason>`, the storage commands `<command>: <reason>`, and FallbackToLogsOnError puts the end of
the log there otherwise); the operator carries it into the Failed and Ready conditions and a Warning Event.
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, still, wait_for

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}
UFILE: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                         "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                         "gpus": 0}
NOT_WRITABLE = ("output-check: spec.outputPath 'pvc://runs/coco/' is not writable by uid 1000 gid 1000 (/data/output "
                "is owned by 0:0, mode 0755: Permission denied); this volume type does not apply the pod's fsGroup: "
                "make that directory of the claim writable by them (chown 1000:1000 on the volume), then delete the "
                "failed Job to retry\n")
TRAINER = "trainer: --train_dir '/data/output/' is not writable: Permission denied\n"


def _claims(admin: Api, ns: str) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)


def _live_pod(admin: Api, ns: str, job: str) -> dict[str, Any] | None:
    return next((p for p in admin.pods(ns, job) if p["status"].get("phase") not in ("Succeeded", "Failed")
                 and not p["metadata"].get("deletionTimestamp")), None)


def _failed_event(admin: Api, ns: str) -> dict[str, Any] | None:
    return next((e for e in admin.events(ns, "coco") if e["reason"] == "Failed"), None)


def test_an_unwritable_pvc_output_fails_at_once_naming_the_field_and_the_fix(admin: Api, ns: str,
                                                                            operator: OperatorProcess) -> None:
    # A namespace that enforces the restricted Pod Security Standard admits the check as it is.
    admin.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    _claims(admin, ns)
    admin.new_training(ns, "coco", {**SPEC, "backoffLimit": 3})
    pod = wait_for(lambda: _live_pod(admin, ns, "coco-stage1"), timeout=60, what="the stage-1 pod")
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["output-check"]
    assert all(c["terminationMessagePolicy"] == "FallbackToLogsOnError"
               for c in pod["spec"]["initContainers"] + pod["spec"]["containers"])
    admin.end_pod(ns, pod, "Failed", {"output-check": (3, NOT_WRITABLE)})
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Failed", timeout=60, what="Failed")
    # The Job controller failed the Job on the check's exit code: no retries burnt on a pod that cannot succeed.
    job = admin.job(ns, "coco-stage1") or {}
    assert [c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"] == ["PodFailurePolicy"]
    still(lambda: len(admin.pods(ns, "coco-stage1")) == 1, 2)
    expected = f"stage 1 failed: {NOT_WRITABLE.strip()} (pod {pod['metadata']['name']}, exit 3)"
    failed, ready = admin.condition(ns, "coco", "Failed"), admin.condition(ns, "coco", "Ready")
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", "OutputNotWritable", expected)
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "OutputNotWritable", expected)
    assert admin.status(ns, "coco")["message"] == expected
    event = wait_for(lambda: _failed_event(admin, ns), what="the Failed Event")
    assert event["type"] == "Warning" and event["message"] == expected


def test_a_failed_trainer_says_why_in_status_ready_and_the_event(admin: Api, ns: str,
                                                                operator: OperatorProcess) -> None:
    _claims(admin, ns)
    admin.new_training(ns, "coco", {**SPEC, "backoffLimit": 1})
    names = []
    for attempt in (1, 2):  # backoffLimit 1: the first failure is retried with a new pod
        pod = wait_for(lambda: _live_pod(admin, ns, "coco-stage1"), timeout=60, what=f"pod of attempt {attempt}")
        # The newest pod's reason wins: the first one says something else.
        admin.end_pod(ns, pod, "Failed", {"output-check": (0, ""), "trainer": (
            2, TRAINER if attempt == 2 else "trainer: no files match --input_file_pattern\n")})
        names.append(pod["metadata"]["name"])
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Failed", timeout=60, what="Failed")
    expected = f"stage 1 failed: {TRAINER.strip()} (pod {names[1]}, exit 2)"
    failed, ready = admin.condition(ns, "coco", "Failed"), admin.condition(ns, "coco", "Ready")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", expected)
    assert (ready["status"], ready["message"]) == ("False", expected)
    event = wait_for(lambda: _failed_event(admin, ns), what="the Failed Event")
    assert event["type"] == "Warning" and event["message"] == expected
    # Nothing more happens to a failed training: no second Event, no flapping status.
    before = admin.training(ns, "coco")["metadata"]["resourceVersion"]
    still(lambda: admin.training(ns, "coco")["metadata"]["resourceVersion"] == before, 3)
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Failed"]


def test_a_log_line_stands_in_when_a_container_wrote_no_reason(admin: Api, ns: str,
                                                               operator: OperatorProcess) -> None:
    """FallbackToLogsOnError: a container that crashed without a reason leaves its log's end; the last line names
    the error, and the container's name is put before it."""
    _claims(admin, ns)
    admin.new_training(ns, "coco", {**SPEC, "backoffLimit": 0})
    pod = wait_for(lambda: _live_pod(admin, ns, "coco-stage1"), timeout=60, what="the stage-1 pod")
    log_tail = ("Traceback (most recent call last):\n  File \"/data/train.py\", line 3\n"
                "MemoryError: out of host memory\n")
    admin.end_pod(ns, pod, "Failed", {"output-check": (0, ""), "trainer": (1, log_tail)})
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Failed", timeout=60, what="Failed")
    assert admin.status(ns, "coco")["message"] == (
        f"stage 1 failed: trainer: MemoryError: out of host memory (pod {pod['metadata']['name']}, exit 1)")


def test_a_failed_final_upload_reaches_status(admin: Api, ns: str, operator: OperatorProcess) -> None:
    """The trainer finished, but the sync sidecar's final upload missed its deadline: the stage succeeded (a
    sidecar's exit does not fail a pod) and status says what the bucket holds now."""
    admin.create(admin.core(ns, "secrets"), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ufile-keys"},
                                             "data": {"publicKey": "cHVi", "privateKey": "cHJpdg=="}})
    admin.new_training(ns, "coco", {**UFILE, "autoAdvance": False})
    pod = wait_for(lambda: _live_pod(admin, ns, "coco-stage1"), timeout=60, what="the stage-1 pod")
    sync = next(c for c in pod["spec"]["initContainers"] if c["name"] == "sync")
    assert "--final-deadline-seconds=240" in sync["args"]
    reason = ("sync: final upload did not finish within its deadline of 240 s; the bucket's index names "
              "model.ckpt-80 (upload of model.ckpt-100.data-00000-of-00001 failed: connection reset)")
    admin.end_pod(ns, pod, "Succeeded", {"fetch": (0, ""), "sync": (1, reason + "\n"), "trainer": (0, "")})
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", timeout=60, what="Succeeded")
    assert admin.status(ns, "coco")["uploadError"] == f"{reason} (pod {pod['metadata']['name']}, exit 1)"
