"""The real operator process on a real control plane: real Jobs, the real Job controller and garbage collector.

The operator runs as its own ServiceAccount with exactly manifests/base/rbac.yaml (conftest). The tests play
only the kubelet's part: they end pods through the status subresource.
"""

from __future__ import annotations

import copy
import re
import signal
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from cluster_support import ROOT, Api, OperatorProcess, still, wait_for
from control_plane import ControlPlane

from im2txt_operator.jobs import command_line
from im2txt_operator.spec import parse_spec

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}


def _training(admin: Api, ns: str, name: str = "coco", **changes: Any) -> dict[str, Any]:
    for claim in ("coco-data", "runs"):
        if admin.get(admin.core(ns, "persistentvolumeclaims", claim)) is None:
            admin.claim(ns, claim)
    return admin.new_training(ns, name, {**SPEC, **changes})


def _args(job: dict[str, Any]) -> str:
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    return " ".join(trainer["command"] + trainer["args"])


def _pod_of(admin: Api, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in admin.pods(ns, job) if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


def _writers(obj: dict[str, Any], subresource: str) -> set[str]:
    """The field managers of ``obj``'s writes other than the controllers' status updates (the Job controller's)."""
    return {m["manager"] for m in obj["metadata"].get("managedFields") or ()
            if m.get("subresource", "") == subresource and m["manager"] != "kube-controller-manager"}


def test_two_stages_on_real_jobs(admin: Api, ns: str, operator: OperatorProcess) -> None:
    created = _training(admin, ns)
    settings = parse_spec(created["spec"])
    job1 = wait_for(lambda: admin.job(ns, "coco-stage1"), what="stage-1 Job")
    assert _args(job1) == command_line(settings, 1)
    owner = job1["metadata"]["ownerReferences"][0]
    assert owner["uid"] == created["metadata"]["uid"] and owner["controller"] is True
    # The real Job controller made the pod; the training reports Running with the stage's target.
    wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), what="the Job controller's pod")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running")
    assert admin.status(ns, "coco")["target"] == 100 and admin.status(ns, "coco")["jobName"] == "coco-stage1"

    admin.finish_pods(ns, "coco-stage1")
    job2 = wait_for(lambda: admin.job(ns, "coco-stage2"), what="stage-2 Job")
    assert _args(job2).endswith("--number_of_steps=300 --train_inception=True")
    assert admin.condition(ns, "coco", "Stage1Complete").get("status") == "True" or wait_for(
        lambda: admin.condition(ns, "coco", "Stage1Complete").get("status") == "True", what="Stage1Complete")
    wait_for(lambda: _pod_of(admin, ns, "coco-stage2"), what="stage-2 pod")
    admin.finish_pods(ns, "coco-stage2")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", what="Succeeded")
    status = admin.status(ns, "coco")
    assert status["step"] == 300 and status["progress"] == 100.0
    assert [s["outcome"] for s in status["stages"]] == ["Succeeded", "Succeeded"]
    assert all(s["startTime"] and s["completionTime"] for s in status["stages"])
    wait_for(lambda: "ExportStarted" in admin.event_reasons(ns, "coco"), what="the export started")
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Stage2Started", "Stage2Complete", "ExportStarted"]
    assert admin.job_names(ns) == ["coco-export", "coco-stage1", "coco-stage2"]
    # The export Job (spec.export, default true) on the real Job controller; the phase stays Succeeded.
    wait_for(lambda: _pod_of(admin, ns, "coco-export"), what="the export pod")
    admin.finish_pods(ns, "coco-export")
    wait_for(lambda: (admin.status(ns, "coco").get("export") or {}).get("phase") == "Succeeded", what="exported")
    assert admin.status(ns, "coco")["export"]["path"] == "pvc://runs/coco/export/"
    wait_for(lambda: "Exported" in admin.event_reasons(ns, "coco"), what="the Exported Event")
    assert admin.status(ns, "coco")["phase"] == "Succeeded"
    # Every write carries one named field manager: managedFields tell the operator's fields from anyone else's.
    for job in admin.job_names(ns):
        assert _writers(admin.job(ns, job), "") == {"im2txt-operator"}, job
    assert _writers(admin.get(admin.trainings(ns, "coco")), "status") == {"im2txt-operator"}
    # Least privilege held: RBAC refused the operator nothing. (Other 403s may appear: trainings of other tests
    # in namespaces being deleted, which refuse new content; those are not about the operator's rights.)
    refused = re.findall(r'forbidden: User "[^"]*" cannot [^"]*"[^"]*"', operator.log)
    assert not refused, refused


def test_kubectl_describe_reads_like_the_trainings_story(installed: ControlPlane, admin: Api, ns: str,
                                                         operator: OperatorProcess) -> None:
    """What a user reads in `kubectl describe im2txttraining`: the phase and stage, the Job it runs, every condition
    with its reason, and every Event of the training's story."""
    _training(admin, ns)
    wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), what="stage-1 pod")
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: _pod_of(admin, ns, "coco-stage2"), what="stage-2 pod")
    admin.finish_pods(ns, "coco-stage2")
    wait_for(lambda: _pod_of(admin, ns, "coco-export"), what="the export pod")
    admin.finish_pods(ns, "coco-export")
    wait_for(lambda: "Exported" in admin.event_reasons(ns, "coco"), what="the Exported Event")
    text = installed.kubectl("describe", "im2txttraining", "coco", "-n", ns).stdout
    fields = dict(re.findall(r"^\s*([A-Z][A-Za-z ]+):\s+(\S.*)$", text, re.M))
    assert (fields["Name"], fields["Phase"], fields["Stage"], fields["Job Name"]) == (
        "coco", "Succeeded", "2", "coco-stage2"), text
    conditions = re.findall(r"^\s+Type:\s+(\w+)$", text, re.M)
    assert {"Ready", "Stage1Complete", "Stage2Complete", "Succeeded"} <= set(conditions), text
    assert len(re.findall(r"^\s+Reason:\s+\w+$", text, re.M)) >= len(conditions), text  # each with its reason
    events = text.split("\nEvents:", 1)[1]
    reasons = re.findall(r"^\s+Normal\s+(\w+)\s", events, re.M)
    story = ["Stage1Started", "Stage2Started", "Stage2Complete", "ExportStarted", "Exported"]
    assert admin.event_reasons(ns, "coco") == story  # posted in the story's order
    assert sorted(reasons) == sorted(story), events
    # kubectl orders Events by lastTimestamp, whole seconds: in the story's order, those of one second in any order.
    stamp = {e["reason"]: e["lastTimestamp"] for e in admin.events(ns, "coco")}
    assert [stamp[r] for r in reasons] == sorted(stamp[r] for r in reasons), (events, stamp)


def test_failure_reports_the_jobs_reason(admin: Api, ns: str, operator: OperatorProcess) -> None:
    _training(admin, ns, backoffLimit=1)
    for attempt in range(2):  # backoffLimit 1: the first failure is retried with a new pod
        wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), timeout=60, what=f"pod of attempt {attempt + 1}")
        admin.finish_pods(ns, "coco-stage1", "Failed")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Failed", timeout=60, what="Failed")
    failed = admin.condition(ns, "coco", "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert "coco-stage1" in admin.status(ns, "coco")["message"]
    still(lambda: admin.job(ns, "coco-stage2") is None, 2)
    wait_for(lambda: "Failed" in admin.event_reasons(ns, "coco"), what="Failed Event")


def test_suspend_and_resume(admin: Api, ns: str, operator: OperatorProcess) -> None:
    _training(admin, ns)
    wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), what="pod")
    first = admin.job(ns, "coco-stage1")
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"suspend": True}})
    # The stage's Job is deleted, its pod first (foreground: it gets its grace period to upload); the operator
    # never writes a Job's spec.suspend (Kueue's, where it queues the Job).
    wait_for(lambda: admin.job(ns, "coco-stage1") is None, timeout=60, what="Job deleted")
    assert not _pod_of(admin, ns, "coco-stage1")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Suspended", what="Suspended")
    assert admin.condition(ns, "coco", "Suspended")["status"] == "True"
    admin.merge_patch(admin.trainings(ns, "coco"), {"spec": {"suspend": False}})
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running again")
    again = wait_for(lambda: admin.job(ns, "coco-stage1"), what="the Job made again")
    assert again["metadata"]["uid"] != first["metadata"]["uid"] and again["spec"]["suspend"] is False
    wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), timeout=60, what="a new pod")
    wait_for(lambda: "Resumed" in admin.event_reasons(ns, "coco"), what="Resumed Event")
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Suspended", "Resumed"]


def test_sigkill_between_stage1_success_and_stage2_creation(admin: Api, ns: str, operator: OperatorProcess) -> None:
    _training(admin, ns)
    wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), what="pod")
    wait_for(lambda: "Stage1Started" in admin.event_reasons(ns, "coco"), what="Stage1Started")
    operator.stop(kill=True)
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: any(c["type"] == "Complete" and c["status"] == "True"
                         for c in (admin.job(ns, "coco-stage1") or {}).get("status", {}).get("conditions") or ()),
             what="the Job controller completes stage 1")
    assert admin.job(ns, "coco-stage2") is None  # nobody advanced while the operator was down
    operator.start()
    wait_for(lambda: admin.job(ns, "coco-stage2"), what="stage 2 after the restart")
    wait_for(lambda: admin.status(ns, "coco").get("stage") == 2, what="stage 2 in status")
    still(lambda: admin.job_names(ns) == ["coco-stage1", "coco-stage2"], 2)
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Stage2Started"]


def test_delete_collects_the_jobs_and_keeps_the_data(admin: Api, ns: str,
                                                     scoped: Callable[..., OperatorProcess]) -> None:
    operator = scoped()  # this namespace alone: its metrics are about this training only
    _training(admin, ns)
    wait_for(lambda: _pod_of(admin, ns, "coco-stage1"), what="pod")
    wait_for(lambda: operator.metric("im2txt_trainings", 'phase="Running"') == 1, what="the training in the cache")
    writes = operator.samples("im2txt_api_writes_total")
    admin.delete(admin.trainings(ns, "coco"))
    wait_for(lambda: admin.job_names(ns) == [], timeout=60, what="garbage collection of the Job")
    wait_for(lambda: admin.pods(ns, "coco-stage1") == [], timeout=60, what="garbage collection of the pod")
    # The operator saw the deletion (the training left its cache) and wrote nothing for it: no delete of its own,
    # the garbage collector did it all.
    wait_for(lambda: operator.metric("im2txt_trainings", 'phase="Running"') == 0, what="the training forgotten")
    assert operator.samples("im2txt_api_writes_total") == writes
    # The claims hold the data and checkpoints: the operator never deletes them.
    assert admin.get(admin.core(ns, "persistentvolumeclaims", "runs")) is not None
    assert "Traceback" not in operator.log


def test_second_server_side_apply_changes_nothing(installed: ControlPlane, admin: Api, ns: str,
                                                  operator: OperatorProcess, tmp_path: Any) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    manifest = tmp_path / "training.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                        "metadata": {"name": "coco", "namespace": ns}, "spec": SPEC}))
    installed.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(manifest))
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Running", what="Running")
    before = admin.training(ns, "coco")
    installed.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(manifest))
    after = admin.training(ns, "coco")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] == 1
    # The apply wrote nothing: its manager's record (fields and time) is as it was. (The resourceVersion is not
    # the measure: the operator may write status between the two reads.)
    assert [m for m in after["metadata"]["managedFields"] if m["manager"] == "gitops"] == \
        [m for m in before["metadata"]["managedFields"] if m["manager"] == "gitops"]
    assert after["spec"] == before["spec"]
    managers = {(m["manager"], m.get("subresource", "")) for m in after["metadata"]["managedFields"]}
    # The user's manager owns the spec; the operator only ever wrote the status subresource.
    assert ("gitops", "") in managers and all(sub == "status" for mgr, sub in managers if mgr != "gitops")
    diff = installed.kubectl("diff", "--server-side", "--field-manager=gitops", "-f", str(manifest), check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_examples_render_jobs_the_server_accepts(installed: ControlPlane, admin: Api, ns: str) -> None:
    """`render` output (what the operator creates: the Jobs, the evaluation Deployment) passes the API's validation:
    dry-run on the server."""
    import subprocess
    import sys

    for example in ("training.yaml", "training-pvc.yaml", "training-ufile.yaml"):
        out = subprocess.run([sys.executable, "-m", "im2txt_operator", "render", str(ROOT / "examples" / example)],
                             capture_output=True, text=True, check=True,
                             env={"PYTHONPATH": f"{ROOT / 'operator'}:{ROOT / 'trainer'}", "PATH": "/usr/bin"}).stdout
        kinds = []
        for obj in yaml.safe_load_all(out):
            obj = copy.deepcopy(obj)
            obj["metadata"]["namespace"] = ns
            obj["metadata"].pop("ownerReferences")
            path = admin.jobs(ns) if obj["kind"] == "Job" else f"/apis/apps/v1/namespaces/{ns}/deployments"
            admin.request("POST", path, obj, params={"dryRun": "All", "fieldValidation": "Strict"})
            kinds.append(obj["kind"])
        assert kinds[-1] == "Deployment" and set(kinds) == {"Job", "Deployment"}, (example, kinds)


def test_operator_stops_cleanly_on_sigterm(admin: Api, ns: str, operator: OperatorProcess) -> None:
    assert operator.proc is not None
    operator.proc.send_signal(signal.SIGTERM)
    assert operator.proc.wait(20) == 0
