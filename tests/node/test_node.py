"""Real pods on a real node: the operator deployed from manifests/base (2 replicas, one leading), a two-stage
ufile:// training and its export in containers under the restricted Pod Security Standard, checkpoints uploaded
while training, stage 2 resuming from stage 1, TensorBoard answering, a leader pod and a trainer pod deleted
mid-stage, a failing trainer's own error line, and make deploy's wait failing when the operator cannot run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from node_support import BUCKET, KUBECONFIG, KUBECTL, ROOT, SUFFIX, TRAINER, cluster, get, kubectl, secret, wait_until

pytestmark = pytest.mark.timeout(3600)

SYSTEM = "im2txt-system"
NS = "node-e2e"
OUTPUT = "uai/im2txt/output/"


def _lease_holder() -> str:
    lease = get("-n", SYSTEM, "lease", "im2txt-operator")
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _operator_pods() -> list[dict[str, Any]]:
    pods = get("-n", SYSTEM, "pods", "-l", "app.kubernetes.io/name=im2txt-operator")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or ())


def test_deploy_runs_two_replicas_and_one_leads(deployed: str) -> None:
    assert "leads and renews the Lease" in deployed, deployed
    pods = _operator_pods()
    assert len(pods) == 2 and all(_ready(p) for p in pods), [p["status"].get("phase") for p in pods]
    assert _lease_holder() in {p["metadata"]["name"] for p in pods}
    for pod in pods:  # the image's numeric user, with no passwd entry, under the restricted settings
        uid = kubectl("-n", SYSTEM, "exec", pod["metadata"]["name"], "--", "python", "-c",
                      "import os; print(os.getuid(), os.environ['HOME'])").stdout.split()
        assert uid == ["65532", "/tmp"]


def _training(name: str) -> dict[str, Any]:
    return {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"dataPath": f"ufile://{BUCKET}/uai/im2txt/data/", "outputPath": f"ufile://{BUCKET}/{OUTPUT}",
                     "credentialsSecret": "ufile-keys", "ufile": {"uploadSuffix": SUFFIX, "downloadSuffix": SUFFIX},
                     "image": TRAINER, "inputFilePattern": "train-?????-of-00002", "numberOfSteps": 100,
                     "stage2NumberOfSteps": 200, "gpus": 0, "checkpointIntervalSeconds": 10,
                     "extraArgs": ["--image_size=75", "--batch_size=8", "--save_interval_secs=5"],
                     "tensorboard": {"enabled": name == "coco", "intervalSeconds": 10},
                     # The evaluation beside training (its own pod, CPU only) for the main scenario only; a small
                     # CPU request, so that it fits this 2-core node beside both replicas, a stage and TensorBoard.
                     "evaluation": {"enabled": name == "coco", "filePattern": "val-?????-of-00001",
                                    "numExamples": 32, "resources": {"requests": {"cpu": "200m", "memory": "1Gi"},
                                                                     "limits": {"memory": "3Gi"}}}}}


def _status(name: str) -> dict[str, Any]:
    return get("-n", NS, "im2txttraining", name).get("status") or {}


def _finals(name: str) -> list[dict[str, Any]]:
    """status.evaluation's two stages once both have their last checkpoint's figure, else []."""
    stages = (_status(name).get("evaluation") or {}).get("stages") or ()
    done = [s for s in stages if "finalPerplexity" in s]
    return done if len(done) == 2 else []


def _running_pod(job: str) -> str:
    pods = get("-n", NS, "pods", "-l", f"job-name={job}")["items"]
    for pod in pods:
        for c in pod["status"].get("containerStatuses") or ():
            if c["name"] == "trainer" and "running" in (c.get("state") or {}):
                return str(pod["metadata"]["name"])
    return ""


def _log(pod: str) -> str:
    return kubectl("-n", NS, "logs", pod, "-c", "trainer", check=False).stdout


def _scalar_tags(url: str) -> set[str]:
    """Every scalar tag TensorBoard serves, over all runs (empty until it has read event files)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            runs = json.loads(resp.read())
    except OSError:
        return set()
    return {tag for run in runs.values() for tag in run}


def _uploaded(server: Any) -> int:
    """The newest checkpoint step in the bucket (its index file is uploaded last)."""
    steps = [int(m[1]) for k in server.store.keys(BUCKET, OUTPUT) if (m := re.search(r"model\.ckpt-(\d+)\.index$", k))]
    return max(steps, default=0)


def test_two_stages_and_the_export_run_in_containers_under_restricted(deployed: str, ufile: Any) -> None:
    server, public, private = ufile
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--timeout=120s")  # a reused cluster's last run
    kubectl("create", "namespace", NS)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    kubectl("apply", "-f", "-", input=json.dumps(_training("coco")))
    started = time.monotonic()

    # Stage 1: fetch (init), sync (native sidecar), the trainer as uid 1000; checkpoints arrive while it trains.
    pod = wait_until(lambda: _running_pod("coco-stage1"), 600, "the stage 1 trainer running")
    spec = get("-n", NS, "pod", pod)["spec"]
    assert spec["securityContext"].get("runAsUser") == 1000 and spec["securityContext"].get("runAsNonRoot")
    assert [c["name"] for c in spec["initContainers"]] == ["fetch", "sync"]
    assert spec["initContainers"][1].get("restartPolicy") == "Always"
    index = wait_until(lambda: [k for k in server.store.keys(BUCKET, OUTPUT) if k.endswith(".index")], 600,
                       "a checkpoint uploaded")
    assert _running_pod("coco-stage1") == pod, "the checkpoint must arrive while the trainer still runs"
    print(f"\nnode: first checkpoint {index[0]} uploaded {time.monotonic() - started:.0f} s after apply")
    job_uid = get("-n", NS, "job", "coco-stage1")["metadata"]["uid"]

    # Failover mid-stage: delete the leading operator pod; the other replica takes the Lease.
    leader = _lease_holder()
    deleted = time.monotonic()
    kubectl("-n", SYSTEM, "delete", "pod", leader, "--wait=false")
    successor = wait_until(lambda: (h := _lease_holder()) not in ("", leader) and h, 60, "a new leader", every=0.1)
    took = time.monotonic() - deleted
    print(f"node: leader {leader} deleted; {successor} leads after {took:.1f} s")
    assert took < 15

    # Stage 2 resumes from stage 1's last checkpoint (the trainer's own line, read with kubectl logs).
    first = wait_until(lambda: _running_pod("coco-stage2"), 900, "the stage 2 trainer running")
    log = wait_until(lambda: (text := _log(first)) and "resumed from" in text and text, 300, "stage 2's resume line")
    assert re.search(r"resumed from \S*model\.ckpt-100 at global step 100", log), log[-3000:]

    # The trainer's pod deleted mid-stage: the Job's next pod resumes from the last uploaded checkpoint.
    uploaded = wait_until(lambda: (n := _uploaded(server)) > 100 and n, 300, "a stage 2 checkpoint uploaded",
                          every=0.2)
    kubectl("-n", NS, "delete", "pod", first, "--wait=false")
    second = wait_until(lambda: (p := _running_pod("coco-stage2")) not in ("", first) and p, 300, "a new pod")
    log = wait_until(lambda: (text := _log(second)) and "resumed from" in text and text, 300, "the resume line")
    resumed = int(re.search(r"resumed from \S*model\.ckpt-(\d+)", log)[1])  # type: ignore[index]
    print(f"node: trainer pod deleted with model.ckpt-{uploaded} uploaded; the next pod resumed at {resumed}")
    assert resumed >= uploaded, log[-3000:]

    status = wait_until(lambda: (s := _status("coco")).get("phase") in ("Succeeded", "Failed") and s, 1800,
                        "the training to end")
    assert status["phase"] == "Succeeded", status
    print(f"node: both stages Succeeded {time.monotonic() - started:.0f} s after apply")
    assert get("-n", NS, "job", "coco-stage1")["metadata"]["uid"] == job_uid, "stage 1's Job was made twice"
    jobs = sorted(j["metadata"]["name"] for j in get("-n", NS, "jobs")["items"])
    assert jobs in (["coco-stage1", "coco-stage2"], ["coco-export", "coco-stage1", "coco-stage2"]), jobs


    # kubectl get shows the final step and a loss.
    row = kubectl("-n", NS, "get", "im2txttrainings", "coco", "--no-headers").stdout.split()
    assert row[:4] == ["coco", "2", "Succeeded", "200"], row
    assert float(row[4]) > 0, row

    # The evaluation: its own pod, admitted under restricted, no GPU; each stage's last checkpoint gets a validation
    # perplexity (stage 2's after the training ended), shown in the PPL column of kubectl get -o wide.
    evaluation = get("-n", NS, "pods", "-l", "app.kubernetes.io/component=evaluation")["items"]
    assert evaluation and evaluation[0]["spec"]["containers"][0]["name"] == "evaluator", evaluation
    finals = wait_until(lambda: _finals("coco"), 900, "both stages' final perplexity")
    assert [(s["stage"], s["finalStep"]) for s in finals] == [(1, 100), (2, 200)], finals
    print("node: " + "; ".join(f"stage {s['stage']}: perplexity {s['finalPerplexity']} at step {s['finalStep']}"
                               for s in finals))
    wide = kubectl("-n", NS, "get", "im2txttrainings", "coco", "-o", "wide").stdout.splitlines()
    at = wide[0].index("PPL")
    assert float(wide[1][at:].split()[0]) == _status("coco")["evaluation"]["perplexity"], wide
    assert not any(c["type"] == "EvaluationFailed" and c["status"] == "True"
                   for c in _status("coco").get("conditions") or ()), _status("coco")

    # TensorBoard: its pod is Ready and answers with the training's scalars (through its Service's endpoint).
    service = get("-n", NS, "service", "coco-tensorboard")
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    board = wait_until(lambda: [p for p in get("-n", NS, "pods", "-l", selector)["items"] if _ready(p)], 300,
                       "the TensorBoard pod Ready")[0]
    url = f"http://{board['status']['podIP']}:6006/data/plugin/scalars/tags"
    tags = wait_until(lambda: (t := _scalar_tags(url)) and "Perplexity" in t and t, 300,
                      f"the training's and the evaluation's scalars from {url}", every=2)
    assert "losses/total_loss" in tags and "Perplexity" in tags, tags  # the eval run beside the training's

    # The export Job wrote the SavedModel (its version is the final step).
    export = wait_until(lambda: (e := _status("coco").get("export") or {}).get("phase") in ("Succeeded", "Failed")
                        and e, 900, "the export to end")
    assert export["phase"] == "Succeeded", export
    assert f"{OUTPUT}export/200/saved_model.pb" in server.store.keys(BUCKET, OUTPUT + "export/")


def test_a_failing_trainer_shows_its_own_error_line(deployed: str, ufile: Any) -> None:
    """Issue 21: the trainer's one-line reason reaches status, kubectl get -o wide (Message) and describe."""
    _server, public, private = ufile
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    broken = _training("broken")
    broken["spec"].update({"outputPath": f"ufile://{BUCKET}/uai/im2txt/broken/", "inputFilePattern": "missing-*",
                           "backoffLimit": 0})
    kubectl("apply", "-f", "-", input=json.dumps(broken))
    status = wait_until(lambda: (s := _status("broken")).get("phase") in ("Failed", "Succeeded") and s, 600,
                        "the broken training to fail")
    assert status["phase"] == "Failed", status
    wide = kubectl("-n", NS, "get", "im2txttrainings", "broken", "-o", "wide").stdout
    assert "trainer: --input_file_pattern: no files match" in wide, wide
    assert "no files match" in kubectl("-n", NS, "describe", "im2txttraining", "broken").stdout


def test_make_deploy_fails_when_the_operator_cannot_run(deployed: str) -> None:
    """A rollout whose pods crash (here: an argument the operator refuses) fails make deploy's wait at once, with
    the crash log; undone, the wait succeeds again."""
    patch = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--no-such-flag"}]
    kubectl("-n", SYSTEM, "patch", "deployment", "im2txt-operator", "--type=json", "-p", json.dumps(patch))
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(ROOT / "tools/deploy_check.py"), f"--kubectl={KUBECTL}",
                               "--timeout=300"], capture_output=True, text=True, timeout=400,
                              env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})
        took = time.monotonic() - started
        print(f"\nnode: deploy check failed after {took:.0f} s:\n{done.stderr[-800:]}")
        assert done.returncode == 1, done.stdout
        assert "cannot run" in done.stderr and "unrecognized arguments: --no-such-flag" in done.stderr, done.stderr
        assert took < 120
    finally:
        kubectl("-n", SYSTEM, "rollout", "undo", "deployment/im2txt-operator")
    done = subprocess.run([sys.executable, str(ROOT / "tools/deploy_check.py"), f"--kubectl={KUBECTL}",
                           "--timeout=300"], capture_output=True, text=True, timeout=400,
                          env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})
    assert done.returncode == 0, done.stderr


def _hostpath_claim(name: str, folder: Path) -> None:
    """A PersistentVolume on a hostPath folder, bound to a claim of the same name (hostPath ignores fsGroup)."""
    folder.mkdir(parents=True, exist_ok=True)
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{NS}-{name}"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                   "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(folder)},
                   "claimRef": {"namespace": NS, "name": name}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": f"{NS}-{name}",
                    "resources": {"requests": {"storage": "1Gi"}}}}
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]}))


def test_a_pvc_output_on_hostpath_is_refused_with_the_reason(deployed: str, ufile: Any) -> None:
    """Issue 21: Kubernetes applies no fsGroup to hostPath, so the output folder the kubelet makes is root's 0755:
    the stage fails at once with reason OutputNotWritable, naming spec.outputPath (not after every retry with only
    BackoffLimitExceeded)."""
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    volumes = cluster.STATE / "volumes"
    _hostpath_claim("node-out", volumes / "out")
    _hostpath_claim("node-data", volumes / "data")
    training = _training("onpvc")
    training["spec"].update({"dataPath": "pvc://node-data/mscoco/", "outputPath": "pvc://node-out/run/"})
    del training["spec"]["credentialsSecret"], training["spec"]["ufile"]
    kubectl("apply", "-f", "-", input=json.dumps(training))
    try:
        status = wait_until(lambda: (s := _status("onpvc")).get("phase") in ("Failed", "Succeeded") and s, 600,
                            "the pvc training to end")
    except AssertionError as e:  # say where it stood: the training, its Job and pods, the operator's log
        seen = [kubectl("-n", NS, "get", "i2t,jobs,pods,pvc", "-o", "wide", check=False).stdout,
                json.dumps(_status("onpvc"), indent=1),
                kubectl("-n", NS, "describe", "pods", check=False).stdout[-3000:],
                kubectl("-n", SYSTEM, "logs", "-l", "app.kubernetes.io/name=im2txt-operator", "--tail=30",
                        "--prefix", check=False).stdout]
        raise AssertionError(f"{e}\n" + "\n".join(seen)) from e
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (status["phase"], failed["reason"]) == ("Failed", "OutputNotWritable"), status
    assert "spec.outputPath" in failed["message"], failed
    wide = kubectl("-n", NS, "get", "im2txttrainings", "onpvc", "-o", "wide").stdout
    assert "spec.outputPath" in wide, wide


def test_an_image_the_node_cannot_pull_is_named_in_status(deployed: str, ufile: Any) -> None:
    """Issue 16: a stage whose image the node cannot pull says so, from the kubelet's own words: Ready=False with
    reason ImagePullFailed naming spec.image and the image, also in kubectl get -o wide (the pod waits in
    ErrImagePull / ImagePullBackOff, which no Job condition reports)."""
    _server, public, private = ufile
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    missing = "localhost/im2txt/no-such-image:0.0.0"
    training = _training("noimage")
    training["spec"].update({"image": missing, "outputPath": f"ufile://{BUCKET}/uai/im2txt/noimage/"})
    kubectl("apply", "-f", "-", input=json.dumps(training))
    try:
        ready = wait_until(lambda: next((c for c in _status("noimage").get("conditions") or ()
                                         if c["type"] == "Ready" and c["reason"] == "ImagePullFailed"), None), 240,
                           "Ready=False ImagePullFailed")
        assert ready["status"] == "False", ready
        assert ready["message"].startswith(f"spec.image: the node cannot pull image '{missing}'"), ready
        assert "(pod noimage-stage1-" in ready["message"], ready
        assert _status("noimage")["phase"] == "Pending"
        wide = kubectl("-n", NS, "get", "im2txttrainings", "noimage", "-o", "wide").stdout
        assert "spec.image: the node cannot pull image" in wide, wide
    finally:
        kubectl("-n", NS, "delete", "im2txttraining", "noimage", "--wait=false", check=False)
