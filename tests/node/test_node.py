"""Real pods on a real node: the operator deployed from manifests/base (2 replicas, one leading), a two-stage
ufile:// training and its export in containers under the restricted Pod Security Standard, checkpoints uploaded
while training (status.uploadedStep names the last), stage 2 resuming from stage 1, TensorBoard answering, a leader
pod and a trainer pod deleted mid-stage, a failing trainer's own error line, a NaN loss flagged LossDiverged, and
make deploy's wait failing when the operator cannot run."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any

import pytest
from node_support import (
    BUCKET,
    NS,
    OUTPUT,
    SYSTEM,
    cluster,
    final_perplexities,
    get,
    hostpath_claim,
    is_ready,
    kubectl,
    lease_holder,
    new_training,
    operator_pods,
    run_deploy_check,
    running_pod,
    scalar_tags,
    secret,
    status_of,
    trainer_log,
    trainer_log_times,
    uploaded_step,
    wait_until,
)

pytestmark = pytest.mark.timeout(3600)



def test_deploy_runs_two_replicas_and_one_leads(deployed: str) -> None:
    assert "leads and renews the Lease" in deployed, deployed
    pods = operator_pods()
    assert len(pods) == 2 and all(is_ready(p) for p in pods), [p["status"].get("phase") for p in pods]
    assert lease_holder() in {p["metadata"]["name"] for p in pods}
    for pod in pods:  # the image's numeric user, with no passwd entry, under the restricted settings
        uid = kubectl("-n", SYSTEM, "exec", pod["metadata"]["name"], "--", "python", "-c",
                      "import os; print(os.getuid(), os.environ['HOME'])").stdout.split()
        assert uid == ["65532", "/tmp"]


def test_two_stages_and_the_export_run_in_containers_under_restricted(deployed: str, ufile: Any) -> None:
    server, public, private = ufile
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--timeout=120s")  # a reused cluster's last run
    kubectl("create", "namespace", NS)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    training = new_training("coco")
    # Stage 1 must train across several of the sync sidecar's rounds (10 s apart, the least the CRD allows): at a
    # batch of 8 it could end before a round had found a checkpoint (twice in three runs here).
    training["spec"]["extraArgs"] = [arg.replace("--batch_size=8", "--batch_size=32")
                                     for arg in training["spec"]["extraArgs"]]
    kubectl("apply", "-f", "-", input=json.dumps(training))
    started = time.monotonic()

    # Stage 1: fetch (init), sync (native sidecar), the trainer as uid 1000; checkpoints arrive while it trains.
    pod = wait_until(lambda: running_pod("coco-stage1"), 600, "the stage 1 trainer running")
    spec = get("-n", NS, "pod", pod)["spec"]
    assert spec["securityContext"].get("runAsUser") == 1000 and spec["securityContext"].get("runAsNonRoot")
    assert [c["name"] for c in spec["initContainers"]] == ["fetch", "sync"]
    assert spec["initContainers"][1].get("restartPolicy") == "Always"
    index = wait_until(lambda: [k for k in server.store.keys(BUCKET, OUTPUT) if k.endswith(".index")], 600,
                       "a checkpoint uploaded")
    # The checkpoint arrived while the trainer still ran: it logged a line after the upload. (Asking whether the
    # trainer runs now was a race: a short stage can end between the upload and the question.)
    uploaded_at = min(server.store.get(BUCKET, key).modified for key in index)
    wait_until(lambda: any(at > uploaded_at for at in trainer_log_times(pod)), 120,
               "a trainer log line after the first checkpoint's upload (it arrives while the trainer runs)",
               on_timeout=lambda: f"; the trainer's lines: {trainer_log_times(pod)}, the upload: {uploaded_at}")
    print(f"\nnode: first checkpoint {index[0]} uploaded {time.monotonic() - started:.0f} s after apply")
    job_uid = get("-n", NS, "job", "coco-stage1")["metadata"]["uid"]

    # Failover mid-stage: delete the leading operator pod; the other replica takes the Lease.
    leader = lease_holder()
    deleted = time.monotonic()
    kubectl("-n", SYSTEM, "delete", "pod", leader, "--wait=false")
    successor = wait_until(lambda: (h := lease_holder()) not in ("", leader) and h, 60, "a new leader", every=0.1)
    took = time.monotonic() - deleted
    print(f"node: leader {leader} deleted; {successor} leads after {took:.1f} s")
    assert took < 15

    # Stage 2 resumes from stage 1's last checkpoint (the trainer's own line, read with kubectl logs).
    first = wait_until(lambda: running_pod("coco-stage2"), 900, "the stage 2 trainer running")
    log = wait_until(lambda: (text := trainer_log(first)) and "resumed from" in text and text, 300,
                     "stage 2's resume line")
    assert re.search(r"resumed from \S*model\.ckpt-100 at global step 100", log), log[-3000:]

    # The trainer's pod deleted mid-stage: the Job's next pod resumes from the last uploaded checkpoint.
    uploaded = wait_until(lambda: (n := uploaded_step(server)) > 100 and n, 300, "a stage 2 checkpoint uploaded",
                          every=0.2)
    kubectl("-n", NS, "delete", "pod", first, "--wait=false")
    second = wait_until(lambda: (p := running_pod("coco-stage2")) not in ("", first) and p, 300, "a new pod")
    log = wait_until(lambda: (text := trainer_log(second)) and "resumed from" in text and text, 300, "the resume line")
    resumed = int(re.search(r"resumed from \S*model\.ckpt-(\d+)", log)[1])  # type: ignore[index]
    print(f"node: trainer pod deleted with model.ckpt-{uploaded} uploaded; the next pod resumed at {resumed}")
    assert resumed >= uploaded, log[-3000:]

    status = wait_until(lambda: (s := status_of("coco")).get("phase") in ("Succeeded", "Failed") and s, 1800,
                        "the training to end")
    assert status["phase"] == "Succeeded", status
    print(f"node: both stages Succeeded {time.monotonic() - started:.0f} s after apply")
    # status.uploadedStep: the checkpoint the sync sidecar last published, the one in the bucket (stage 2's last).
    assert status.get("uploadedStep") == uploaded_step(server) == 200, (status.get("uploadedStep"),
                                                                         uploaded_step(server))
    assert get("-n", NS, "job", "coco-stage1")["metadata"]["uid"] == job_uid, "stage 1's Job was made twice"
    jobs = sorted(j["metadata"]["name"] for j in get("-n", NS, "jobs")["items"])
    assert jobs in (["coco-stage1", "coco-stage2"], ["coco-export", "coco-stage1", "coco-stage2"]), jobs

    # kubectl get shows the final step and the final loss: the last one stage 2's trainer logged (issue 21.4: the
    # column kept whatever the poller had read last, once the loss of stage 1's step 74 after step 300).
    done = [p["metadata"]["name"] for p in get("-n", NS, "pods", "-l", "job-name=coco-stage2")["items"]
            if p["status"].get("phase") == "Succeeded"]
    logged = re.findall(r"global step (\d+): loss = ([-+.\deE]+) ", trainer_log(done[0]))
    header, line = kubectl("-n", NS, "get", "im2txttrainings", "coco").stdout.splitlines()
    row = {k: line[header.index(k):].split()[0] for k in ("NAME", "STAGE", "PHASE", "STEP", "LOSS")}  # aligned
    assert [row[k] for k in ("NAME", "STAGE", "PHASE", "STEP")] == ["coco", "2", "Succeeded", "200"], row
    print(f"node: the last loss logged: {logged[-1]}; status.loss {status.get('loss')}, LOSS column {row['LOSS']}")
    assert status["loss"] == float(f"{float(logged[-1][1]):.4g}") == float(row["LOSS"]), (logged[-3:], status)

    # The evaluation: its own pod, admitted under restricted, no GPU; each stage's last checkpoint gets a validation
    # perplexity (stage 2's after the training ended), shown in the PPL column of kubectl get -o wide.
    evaluation = get("-n", NS, "pods", "-l", "app.kubernetes.io/component=evaluation")["items"]
    assert evaluation and evaluation[0]["spec"]["containers"][0]["name"] == "evaluator", evaluation
    finals = wait_until(lambda: final_perplexities("coco"), 900, "both stages' final perplexity")
    assert [(s["stage"], s["finalStep"]) for s in finals] == [(1, 100), (2, 200)], finals
    print("node: " + "; ".join(f"stage {s['stage']}: perplexity {s['finalPerplexity']} at step {s['finalStep']}"
                               for s in finals))
    wide = kubectl("-n", NS, "get", "im2txttrainings", "coco", "-o", "wide").stdout.splitlines()
    at = wide[0].index("PPL")
    assert float(wide[1][at:].split()[0]) == status_of("coco")["evaluation"]["perplexity"], wide
    assert not any(c["type"] == "EvaluationFailed" and c["status"] == "True"
                   for c in status_of("coco").get("conditions") or ()), status_of("coco")

    # TensorBoard: its pod is Ready and answers with the training's scalars (through its Service's endpoint).
    service = get("-n", NS, "service", "coco-tensorboard")
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    board = wait_until(lambda: [p for p in get("-n", NS, "pods", "-l", selector)["items"] if is_ready(p)], 300,
                       "the TensorBoard pod Ready")[0]
    url = f"http://{board['status']['podIP']}:6006/data/plugin/scalars/tags"
    tags = wait_until(lambda: (t := scalar_tags(url)) and "Perplexity" in t and t, 300,
                      f"the training's and the evaluation's scalars from {url}", every=2)
    assert "losses/total_loss" in tags and "Perplexity" in tags, tags  # the eval run beside the training's

    # The export Job wrote the SavedModel (its version is the final step).
    export = wait_until(lambda: (e := status_of("coco").get("export") or {}).get("phase") in ("Succeeded", "Failed")
                        and e, 900, "the export to end")
    assert export["phase"] == "Succeeded", export
    assert f"{OUTPUT}export/200/saved_model.pb" in server.store.keys(BUCKET, OUTPUT + "export/")


def test_a_failing_trainer_shows_its_own_error_line(deployed: str, ufile: Any) -> None:
    """Issue 21: the trainer's one-line reason reaches status, kubectl get -o wide (Message) and describe."""
    _server, public, private = ufile
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    broken = new_training("broken")
    broken["spec"].update({"outputPath": f"ufile://{BUCKET}/uai/im2txt/broken/", "inputFilePattern": "missing-*",
                           "backoffLimit": 0})
    kubectl("apply", "-f", "-", input=json.dumps(broken))
    status = wait_until(lambda: (s := status_of("broken")).get("phase") in ("Failed", "Succeeded") and s, 600,
                        "the broken training to fail")
    assert status["phase"] == "Failed", status
    wide = kubectl("-n", NS, "get", "im2txttrainings", "broken", "-o", "wide").stdout
    assert "trainer: --input_file_pattern: no files match" in wide, wide
    assert "no files match" in kubectl("-n", NS, "describe", "im2txttraining", "broken").stdout


def test_a_training_whose_loss_turns_nan_says_loss_diverged(deployed: str, ufile: Any) -> None:
    """A learning rate of 1e30 makes the real trainer's loss NaN from its second step (measured with the trainer CLI
    on this tier's data): LossDiverged=True with reason NonFiniteLoss, no status.loss, and one Warning Event however
    many NaN lines the poller reads until the stage ends."""
    _server, public, private = ufile
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    diverging = new_training("diverging")
    diverging["spec"].update({"outputPath": f"ufile://{BUCKET}/uai/im2txt/diverging/", "numberOfSteps": 40,
                              "autoAdvance": False,
                              "extraArgs": [*diverging["spec"]["extraArgs"], "--initial_learning_rate=1e30"]})
    kubectl("apply", "-f", "-", input=json.dumps(diverging))
    started = time.monotonic()
    status = wait_until(lambda: (s := status_of("diverging")).get("phase") in ("Failed", "Succeeded") and s, 600,
                        "the diverging training to end")
    print(f"node: the diverging training ended ({status['phase']}) {time.monotonic() - started:.0f} s after apply")
    assert status["phase"] == "Succeeded", status  # a NaN loss does not stop the trainer: the stage runs out
    diverged = [c for c in status.get("conditions") or () if c["type"] == "LossDiverged"]
    assert [(c["status"], c["reason"]) for c in diverged] == [("True", "NonFiniteLoss")], status
    assert "loss = nan" in diverged[0]["message"] and "loss" not in status, status
    events = get("-n", NS, "events", "--field-selector", "involvedObject.name=diverging")["items"]
    warned = [(e["type"], e.get("count") or 1) for e in events if e["reason"] == "LossDiverged"]
    assert warned == [("Warning", 1)], [(e["reason"], e["message"]) for e in events]
    kubectl("-n", NS, "delete", "im2txttraining", "diverging", "--wait=false")


CONTAINER = "/spec/template/spec/containers/0"
# Two ways a rollout cannot run, as (JSON patch, lines the crash log must show): every pod crashes at once (an
# argument the operator refuses), or each crashes only once it leads (issue 21.1's shape: a setting read only then),
# while the standby answers its probes and looks Ready, which `kubectl rollout status` alone took for success.
BROKEN = {
    "every-pod": ([{"op": "add", "path": f"{CONTAINER}/args/-", "value": "--no-such-flag"}],
                  ["unrecognized arguments: --no-such-flag"]),
    "leader-only": ([{"op": "add", "path": f"{CONTAINER}/env/-",
                      "value": {"name": "IM2TXT_PROGRESS_INTERVAL", "value": "not-a-number"}}],
                    ["became the leader", "could not convert string to float: 'not-a-number'"]),
}


@pytest.mark.parametrize("how", BROKEN)
def test_make_deploy_fails_when_the_operator_cannot_run(deployed: str, how: str) -> None:
    """make deploy's wait fails soon, with the crash log, when the rollout's operator cannot run; undone, the wait
    succeeds again."""
    patch, crash = BROKEN[how]
    kubectl("-n", SYSTEM, "patch", "deployment", "im2txt-operator", "--type=json", "-p", json.dumps(patch))
    try:
        started = time.monotonic()
        done = run_deploy_check()
        took = time.monotonic() - started
        print(f"\nnode: deploy check ({how}) failed after {took:.0f} s:\n{done.stderr[-800:]}")
        print(kubectl("-n", SYSTEM, "get", "pods,lease", "-o", "wide").stdout)
        assert done.returncode == 1, done.stdout
        assert "cannot run" in done.stderr and all(line in done.stderr for line in crash), done.stderr
        assert took < 180
    finally:
        kubectl("-n", SYSTEM, "rollout", "undo", "deployment/im2txt-operator")
    done = run_deploy_check()
    assert done.returncode == 0, done.stderr


def test_a_pvc_output_on_hostpath_is_refused_with_the_reason(deployed: str, ufile: Any) -> None:
    """Issue 21: Kubernetes applies no fsGroup to hostPath, so the output folder the kubelet makes is root's 0755:
    the stage fails at once with reason OutputNotWritable, naming spec.outputPath (not after every retry with only
    BackoffLimitExceeded)."""
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    volumes = cluster.STATE / "volumes"
    shutil.rmtree(volumes / "out", ignore_errors=True)  # a reused cluster's run left it writable (the fix below)
    hostpath_claim("node-out", volumes / "out")
    hostpath_claim("node-data", volumes / "data")
    training = new_training("onpvc")
    training["spec"].update({"dataPath": "pvc://node-data/mscoco/", "outputPath": "pvc://node-out/run/"})
    del training["spec"]["credentialsSecret"], training["spec"]["ufile"]
    kubectl("apply", "-f", "-", input=json.dumps(training))
    try:
        status = wait_until(lambda: (s := status_of("onpvc")).get("phase") in ("Failed", "Succeeded") and s, 600,
                            "the pvc training to end")
    except AssertionError as e:  # say where it stood: the training, its Job and pods, the operator's log
        seen = [kubectl("-n", NS, "get", "i2t,jobs,pods,pvc", "-o", "wide", check=False).stdout,
                json.dumps(status_of("onpvc"), indent=1),
                kubectl("-n", NS, "describe", "pods", check=False).stdout[-3000:],
                kubectl("-n", SYSTEM, "logs", "-l", "app.kubernetes.io/name=im2txt-operator", "--tail=30",
                        "--prefix", check=False).stdout]
        raise AssertionError(f"{e}\n" + "\n".join(seen)) from e
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (status["phase"], failed["reason"]) == ("Failed", "OutputNotWritable"), status
    assert failed["message"].startswith("stage 1 failed: output-check: spec.outputPath 'pvc://node-out/run' is not "
                                        "writable by uid 1000 gid 1000 (/data/output is owned by 0:0"), failed
    assert "chown 1000:1000 on the volume" in failed["message"], failed  # the fix
    assert len(get("-n", NS, "pods", "-l", "job-name=onpvc-stage1")["items"]) == 1  # no retry burnt
    wide = kubectl("-n", NS, "get", "im2txttrainings", "onpvc", "-o", "wide").stdout
    assert "spec.outputPath 'pvc://node-out/run' is not writable" in wide, wide
    assert "chown 1000:1000" in kubectl("-n", NS, "describe", "im2txttraining", "onpvc").stdout

    # The fix the message names works: the directory made the trainer's, the failed Job deleted; the operator
    # makes the Job again and its pod's output check passes.
    for folder in (volumes / "out", volumes / "out" / "run"):
        os.chown(folder, 1000, 1000)
    refused = {p["metadata"]["name"] for p in get("-n", NS, "pods", "-l", "job-name=onpvc-stage1")["items"]}
    kubectl("-n", NS, "delete", "job", "onpvc-stage1", "--wait=true")  # its pod goes later (background GC)
    checks = wait_until(lambda: [s for p in get("-n", NS, "pods", "-l", "job-name=onpvc-stage1")["items"]
                                 if p["metadata"]["name"] not in refused
                                 for s in p["status"].get("initContainerStatuses") or ()
                                 if s["name"] == "output-check" and "terminated" in s["state"]], 300,
                        "the output check of the Job made again")
    assert checks[0]["state"]["terminated"]["exitCode"] == 0, checks
    kubectl("-n", NS, "delete", "im2txttraining", "onpvc", "--wait=false")


def test_an_image_the_node_cannot_pull_is_named_in_status(deployed: str, ufile: Any) -> None:
    """Issue 16: a stage whose image the node cannot pull says so, from the kubelet's own words: Ready=False with
    reason ImagePullFailed naming spec.image and the image, also in kubectl get -o wide (the pod waits in
    ErrImagePull / ImagePullBackOff, which no Job condition reports)."""
    _server, public, private = ufile
    kubectl("create", "namespace", NS, check=False)
    kubectl("label", "--overwrite", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    secret(NS, public, private)
    missing = "localhost/im2txt/no-such-image:0.0.0"
    training = new_training("noimage")
    training["spec"].update({"image": missing, "outputPath": f"ufile://{BUCKET}/uai/im2txt/noimage/"})
    kubectl("apply", "-f", "-", input=json.dumps(training))
    try:
        ready = wait_until(lambda: next((c for c in status_of("noimage").get("conditions") or ()
                                         if c["type"] == "Ready" and c["reason"] == "ImagePullFailed"), None), 240,
                           "Ready=False ImagePullFailed")
        assert ready["status"] == "False", ready
        assert ready["message"].startswith(f"spec.image: the node cannot pull image '{missing}'"), ready
        assert "(pod noimage-stage1-" in ready["message"], ready
        assert status_of("noimage")["phase"] == "Pending"
        wide = kubectl("-n", NS, "get", "im2txttrainings", "noimage", "-o", "wide").stdout
        assert "spec.image: the node cannot pull image" in wide, wide
    finally:
        kubectl("-n", NS, "delete", "im2txttraining", "noimage", "--wait=false", check=False)
