"""Real pods on a real node: the operator deployed from manifests/base (2 replicas, one leading), a two-stage
ufile:// training and its export in containers under the restricted Pod Security Standard, checkpoints uploaded
while training, stage 2 resuming from stage 1, and a leader pod deleted mid-stage."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from conftest import BUCKET, SUFFIX, TRAINER, get, kubectl, secret, wait_until

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
                     "extraArgs": ["--image_size=75", "--batch_size=8", "--save_interval_secs=5"]}}


def _status(name: str) -> dict[str, Any]:
    return get("-n", NS, "im2txttraining", name).get("status") or {}


def _running_pod(job: str) -> str:
    pods = get("-n", NS, "pods", "-l", f"job-name={job}")["items"]
    for pod in pods:
        for c in pod["status"].get("containerStatuses") or ():
            if c["name"] == "trainer" and "running" in (c.get("state") or {}):
                return str(pod["metadata"]["name"])
    return ""


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

    status = wait_until(lambda: (s := _status("coco")).get("phase") in ("Succeeded", "Failed") and s, 1800,
                        "the training to end")
    assert status["phase"] == "Succeeded", status
    print(f"node: both stages Succeeded {time.monotonic() - started:.0f} s after apply")
    assert get("-n", NS, "job", "coco-stage1")["metadata"]["uid"] == job_uid, "stage 1's Job was made twice"
    jobs = sorted(j["metadata"]["name"] for j in get("-n", NS, "jobs")["items"])
    assert jobs in (["coco-stage1", "coco-stage2"], ["coco-export", "coco-stage1", "coco-stage2"]), jobs

    # Stage 2 resumed from stage 1's last checkpoint (the trainer's own line).
    log = kubectl("-n", NS, "logs", "job/coco-stage2", "-c", "trainer").stdout
    assert re.search(r"resumed from \S*model\.ckpt-100 at global step 100", log), log[-3000:]

    # kubectl get shows the final step and a loss.
    row = kubectl("-n", NS, "get", "im2txttrainings", "coco", "--no-headers").stdout.split()
    assert row[:4] == ["coco", "2", "Succeeded", "200"], row
    assert float(row[4]) > 0, row

    # The export Job wrote the SavedModel (its version is the final step).
    export = wait_until(lambda: (e := _status("coco").get("export") or {}).get("phase") in ("Succeeded", "Failed")
                        and e, 900, "the export to end")
    assert export["phase"] == "Succeeded", export
    assert f"{OUTPUT}export/200/saved_model.pb" in server.store.keys(BUCKET, OUTPUT + "export/")
