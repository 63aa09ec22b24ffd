"""The real operator process (kopf) against the HTTP API emulator: the whole lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import (
    JOBS,
    PODS,
    TRAININGS,
    complete_job,
    condition,
    emulator,
    event_reasons,
    fail_job,
    job,
    jobs,
    new_training,
    operator,
    start_pod,
    status,
    still,
    wait_for,
)

from im2txt_operator.jobs import command_line
from im2txt_operator.spec import parse_spec
from im2txt_standins.kube_api import KubeAPI

pytestmark = pytest.mark.timeout(120)


def _command(api, name: str) -> str:  # type: ignore[no-untyped-def]
    trainer = job(api, name)["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    return " ".join(trainer["command"] + trainer["args"])


async def test_two_stages_with_progress(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        created = new_training(api, "coco")
        settings = parse_spec(created["spec"])
        await wait_for(lambda: job(api, "coco-stage1"), what="stage-1 Job")
        assert _command(api, "coco-stage1") == command_line(settings, 1)
        owner = job(api, "coco-stage1")["metadata"]["ownerReferences"][0]  # type: ignore[index]
        assert owner["uid"] == created["metadata"]["uid"] and owner["controller"] is True
        await wait_for(lambda: status(api, "coco").get("phase") == "Running", what="Running")
        assert status(api, "coco")["jobName"] == "coco-stage1" and status(api, "coco")["target"] == 100

        # Step progress from the trainer's log (the last "global step N" line).
        start_pod(api, "coco-stage1", "global step 10: loss = 5.1 (0.50 sec/step)\n"
                                      "global step 40: loss = 2.3 (0.50 sec/step)\n")
        await wait_for(lambda: status(api, "coco").get("step") == 40, what="step 40")
        assert status(api, "coco")["progress"] == 40.0 and status(api, "coco")["eta"] == "30s"
        assert status(api, "coco")["loss"] == 2.3

        # Stage 1 completes -> stage 2 with the stage-2 command, at most 3 writes for the transition.
        await wait_for(lambda: "Stage1Started" in event_reasons(api, "coco"), what="event")
        before = dict(api.writes)
        complete_job(api, "coco-stage1")
        await wait_for(lambda: job(api, "coco-stage2"), what="stage-2 Job")
        assert _command(api, "coco-stage2") == command_line(settings, 2)
        assert _command(api, "coco-stage2").endswith("--number_of_steps=300 --train_inception=True")
        await wait_for(lambda: status(api, "coco").get("stage") == 2, what="stage 2 in status")
        await wait_for(lambda: "Stage2Started" in event_reasons(api, "coco"), what="event")
        await still(lambda: True, 0.5)
        delta = {k: v - before.get(k, 0) for k, v in api.writes.items() if v != before.get(k, 0)}
        assert delta == {"create jobs": 1, "patch im2txttrainings/status": 1, "create events": 1}, delta
        assert condition(api, "coco", "Stage1Complete")["status"] == "True"

        complete_job(api, "coco-stage2")
        await wait_for(lambda: status(api, "coco").get("phase") == "Succeeded", what="Succeeded")
        assert condition(api, "coco", "Succeeded")["status"] == "True"
        assert condition(api, "coco", "Stage2Complete")["status"] == "True"
        assert status(api, "coco")["progress"] == 100.0
        assert [s["outcome"] for s in status(api, "coco")["stages"]] == ["Succeeded", "Succeeded"]
        await wait_for(lambda: "ExportStarted" in event_reasons(api, "coco"), what="event")
        assert event_reasons(api, "coco") == ["Stage1Started", "Stage2Started", "Stage2Complete", "ExportStarted"]
        assert jobs(api) == ["coco-export", "coco-stage1", "coco-stage2"]
        # The export (spec.export, default true): a third, short Job after stage 2; the phase stays Succeeded.
        export = job(api, "coco-export")["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
        assert export["command"] == ["python", "-m", "im2txt_trainer.export"]
        assert status(api, "coco")["export"]["phase"] == "Running"
        complete_job(api, "coco-export")
        await wait_for(lambda: status(api, "coco")["export"]["phase"] == "Succeeded", what="exported")
        assert status(api, "coco")["export"]["path"] == "pvc://runs/coco/export/"
        await wait_for(lambda: "Exported" in event_reasons(api, "coco"), what="event")
        assert status(api, "coco")["phase"] == "Succeeded"
        # Only our own Jobs are watched (server-side label selector): unrelated Jobs never reach the operator.
        job_watches = [str(r.url) for r in list(api) if "watch=true" in str(r.url) and "/jobs" in str(r.url)]
        assert job_watches and all("labelSelector=app.kubernetes.io/managed-by%3Dim2txt-operator" in w
                                   for w in job_watches)
        assert created["spec"] == api.get_object(TRAININGS, "default", "coco")["spec"]  # type: ignore[index]


async def test_job_failure_fails_the_training(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "a")
        new_training(api, "b", {"stage": 2, "maxRunSeconds": 60})
        await wait_for(lambda: job(api, "a-stage1") and job(api, "b-stage2"), what="Jobs")
        assert job(api, "b-stage2")["spec"]["activeDeadlineSeconds"] == 60  # type: ignore[index]
        fail_job(api, "a-stage1", "BackoffLimitExceeded")
        fail_job(api, "b-stage2", "DeadlineExceeded")
        await wait_for(lambda: status(api, "a").get("phase") == "Failed" and status(api, "b").get("phase") == "Failed",
                       what="Failed")
        assert condition(api, "a", "Failed")["reason"] == "BackoffLimitExceeded"
        assert condition(api, "b", "Failed")["reason"] == "DeadlineExceeded"
        assert "DeadlineExceeded" in status(api, "b")["message"]
        await still(lambda: jobs(api) == ["a-stage1", "b-stage2"])
        await wait_for(lambda: "Failed" in event_reasons(api, "a"), what="event")


async def test_suspend_and_resume(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "s")
        first = await wait_for(lambda: job(api, "s-stage1"), what="Job")
        api.patch_object(TRAININGS, "default", "s", {"spec": {"suspend": True}})
        # The stage's Job is deleted (with its pods, and a Kueue Workload's quota); resume makes it again.
        await wait_for(lambda: job(api, "s-stage1") is None, what="Job deleted")
        await wait_for(lambda: status(api, "s").get("phase") == "Suspended", what="Suspended")
        assert condition(api, "s", "Suspended")["status"] == "True"
        assert status(api, "s")["observedGeneration"] == 2
        api.patch_object(TRAININGS, "default", "s", {"spec": {"suspend": False}})
        again = await wait_for(lambda: job(api, "s-stage1"), what="Job created again")
        assert again["metadata"]["uid"] != first["metadata"]["uid"] and again["spec"]["suspend"] is False
        await wait_for(lambda: status(api, "s").get("phase") == "Running", what="Running")
        await wait_for(lambda: event_reasons(api, "s")[-2:] == ["Suspended", "Resumed"], what="events")
        assert jobs(api) == ["s-stage1"]


async def test_delete_removes_the_jobs_not_the_data(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "d")
        await wait_for(lambda: job(api, "d-stage1"), what="Job")
        writes_before = dict(api.writes)
        api.delete_object(TRAININGS, "default", "d")
        await wait_for(lambda: jobs(api) == [], what="Jobs garbage-collected")
        await still(lambda: jobs(api) == [], 1.0)
        # The operator made no deletes of its own (nothing else to delete: the data stays where it is).
        assert not any(k.startswith("delete") for k in api.writes if api.writes[k] != writes_before.get(k, 0))


def _config_error(api: KubeAPI, pod: str, message: str | None) -> None:
    """The kubelet's part: the fetch container waits with CreateContainerConfigError, or (None) it started."""
    if message is None:
        api.patch_object(PODS, "default", pod, {"status": {"phase": "Running", "initContainerStatuses": None}},
                         status=True)
        return
    api.patch_object(PODS, "default", pod, {"status": {"phase": "Pending", "initContainerStatuses": [
        {"name": "fetch", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}]}}, status=True)


async def test_missing_secret_is_read_from_the_pods_status(tmp_path: Path) -> None:
    """The operator reads no Secret: the Job is created, and the pod's CreateContainerConfigError names it."""
    spec = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run/",
            "credentialsSecret": "ufile-keys"}
    async with emulator(tmp_path) as api, operator(api, tmp_path) as op:
        new_training(api, "u", spec)
        await wait_for(lambda: job(api, "u-stage1"), what="the Job, without any Secret lookup")
        pod = start_pod(api, "u-stage1", "")
        _config_error(api, pod, 'secret "ufile-keys" not found')
        await wait_for(lambda: condition(api, "u", "Ready").get("status") == "False", what="Ready False")
        ready = condition(api, "u", "Ready")
        assert ready["reason"] == "SecretNotFound"
        assert ready["message"].startswith("spec.credentialsSecret: Secret 'ufile-keys' not found in namespace "
                                           "'default'; expected a Secret with keys publicKey and privateKey")
        assert status(api, "u")["phase"] == "Pending"
        assert status(api, "u")["message"].startswith("stage 1 waits: spec.credentialsSecret:")
        _config_error(api, pod, "couldn't find key privateKey in Secret default/ufile-keys")
        await wait_for(lambda: condition(api, "u", "Ready").get("reason") == "SecretKeyMissing", what="key missing")
        assert "lacks key privateKey" in condition(api, "u", "Ready")["message"]
        _config_error(api, pod, None)  # the Secret is complete: the kubelet starts the containers
        await wait_for(lambda: condition(api, "u", "Ready").get("status") == "True", what="Ready")
        assert status(api, "u")["phase"] == "Running"
        reasons = await wait_for(lambda: "SpecValid" in event_reasons(api, "u") and event_reasons(api, "u"),
                                 what="events")
        assert reasons == ["Stage1Started", "SecretNotFound", "SecretKeyMissing", "SpecValid"]
        assert jobs(api) == ["u-stage1"]  # the same Job throughout: nothing was re-created
        assert "secrets" not in op.log


async def test_a_restart_with_the_secret_still_missing_never_reports_it_fixed(tmp_path: Path) -> None:
    """The pod problem is learned from the pod, so a new operator reads the pod before it writes status."""
    spec = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run/",
            "credentialsSecret": "ufile-keys"}
    async with emulator(tmp_path) as api:
        async with operator(api, tmp_path):
            new_training(api, "u", spec)
            await wait_for(lambda: job(api, "u-stage1"), what="the Job")
            pod = start_pod(api, "u-stage1", "")
            _config_error(api, pod, 'secret "ufile-keys" not found')
            await wait_for(lambda: condition(api, "u", "Ready").get("reason") == "SecretNotFound", what="the problem")
        async with operator(api, tmp_path) as op:  # the pod still waits on the Secret
            await op.reconciled(1)
            await still(lambda: condition(api, "u", "Ready").get("reason") == "SecretNotFound", 2.0)
            assert status(api, "u")["phase"] == "Pending"
            assert "SpecValid" not in event_reasons(api, "u")
            _config_error(api, pod, None)  # now the Secret is there: the next poll says so
            await wait_for(lambda: condition(api, "u", "Ready").get("status") == "True", what="Ready")


async def test_a_ufile_host_the_admin_did_not_allow_gets_no_job(tmp_path: Path) -> None:
    """spec.ufile names where the storage containers send requests signed with the training's keys: only the
    domains of the operator's --ufile-domains (UCloud's by default) get a Job."""
    spec = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run/",
            "credentialsSecret": "ufile-keys", "ufile": {"uploadSuffix": ".89.0.1", "downloadSuffix": ".89.0.1"}}
    async with emulator(tmp_path) as api:
        async with operator(api, tmp_path) as op:
            new_training(api, "u", spec)
            await wait_for(lambda: condition(api, "u", "Ready").get("status") == "False", what="Ready False")
            ready = condition(api, "u", "Ready")
            assert ready["message"].startswith("spec.ufile.uploadSuffix: '.89.0.1' is not in a UFile domain this "
                                               "cluster allows"), ready
            await op.reconciled(1)
            await still(lambda: jobs(api) == [], 1.0)
        async with operator(api, tmp_path, args=("--all-namespaces", "--ufile-domains=.89.0.1")):
            await wait_for(lambda: job(api, "u-stage1"), what="the Job, once the admin allows the host")
            # The Job is written before the status patch of the same reconcile: Ready follows a moment later.
            await wait_for(lambda: condition(api, "u", "Ready").get("status") == "True", what="Ready again")


async def test_missing_claim_then_created(tmp_path: Path) -> None:
    from harness import add_claim

    async with emulator(tmp_path) as api, operator(api, tmp_path):
        add_claim(api, "coco-data")
        new_training(api, "p", claims=False)
        await wait_for(lambda: condition(api, "p", "Ready").get("reason") == "ClaimNotFound", what="claim missing")
        assert condition(api, "p", "Ready")["message"].startswith(
            "spec.outputPath: PersistentVolumeClaim 'runs' not found in namespace 'default'")
        await still(lambda: jobs(api) == [], 1.0)
        add_claim(api, "runs")
        await wait_for(lambda: job(api, "p-stage1"), what="Job after the claim exists")
        # A name the CRD would refuse (too long for the Job names) is reported, not retried forever.
        long_name = "n" * 52
        new_training(api, long_name)
        await wait_for(lambda: condition(api, long_name, "Ready").get("reason") == "InvalidSpec", what="InvalidSpec")
        assert condition(api, long_name, "Ready")["message"].startswith("metadata.name: must be at most 51")
        assert jobs(api) == ["p-stage1"]


async def test_auto_advance_off_stops_after_stage_1(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "one", {"autoAdvance": False})
        await wait_for(lambda: job(api, "one-stage1"), what="Job")
        complete_job(api, "one-stage1")
        await wait_for(lambda: status(api, "one").get("phase") == "Succeeded", what="Succeeded")
        assert condition(api, "one", "Succeeded")["reason"] == "StoppedAfterStage1"
        assert condition(api, "one", "Stage2Complete")["reason"] == "AutoAdvanceOff"
        assert "autoAdvance" in status(api, "one")["message"]
        await still(lambda: jobs(api) == ["one-stage1"], 1.0)
        api.patch_object(TRAININGS, "default", "one", {"spec": {"autoAdvance": True}})
        await wait_for(lambda: job(api, "one-stage2"), what="stage 2 after autoAdvance: true")


async def test_the_final_step_and_loss_are_read_when_a_stage_ends(tmp_path: Path) -> None:
    """The poller reads the log every interval (an hour here: it never gets to); the stage's end reads it once more,
    so Succeeded shows the loss and step the stage ended with."""
    async with emulator(tmp_path) as api, operator(api, tmp_path, interval=3600):
        new_training(api, "one", {"autoAdvance": False})
        await wait_for(lambda: status(api, "one").get("phase") == "Running", what="Running")
        start_pod(api, "one-stage1", "global step 74: loss = 3.1 (0.50 sec/step)\n"
                                     "global step 100: loss = 1.2345678 (0.50 sec/step)\n"
                                     "reached global step 100\n")  # the trainer's last line (driver.py)
        # The start's Event is posted after its status patch (kopf queues Events): count from after both.
        await wait_for(lambda: "Stage1Started" in event_reasons(api, "one"), what="the Stage1Started Event")
        before = dict(api.writes)
        complete_job(api, "one-stage1")
        await wait_for(lambda: status(api, "one").get("phase") == "Succeeded", what="Succeeded")
        assert (status(api, "one")["step"], status(api, "one").get("loss")) == (100, 1.235)
        await still(lambda: True, 0.5)
        delta = {k: v - before.get(k, 0) for k, v in api.writes.items() if v != before.get(k, 0)}
        assert delta == {"patch im2txttrainings/status": 1, "create events": 1}, delta  # read in the same patch


async def test_the_uploaded_step_follows_the_sync_sidecars_log(tmp_path: Path) -> None:
    spec = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
            "credentialsSecret": "ufile-keys"}
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "coco", spec, claims=False)
        await wait_for(lambda: status(api, "coco").get("phase") == "Running", what="Running")
        pod = start_pod(api, "coco-stage1", "global step 41: loss = 2.3 (0.50 sec/step)\n", sidecars=("sync",))
        api.set_log("default", pod, "sync", 'ts=... level=info logger=im2txt_storage msg="sync: published checkpoint '
                                            'model.ckpt-30 (index uploaded)"\n'
                                            'ts=... level=info logger=im2txt_storage msg="sync: published checkpoint '
                                            'model.ckpt-40 (index uploaded)"\n'
                                            'ts=... level=warning logger=im2txt_storage msg="retrying PUT"\n')
        await wait_for(lambda: status(api, "coco").get("uploadedStep") == 40, what="uploadedStep 40")
        assert status(api, "coco")["step"] == 41


async def test_spec_change_mid_run_applies_to_the_next_stage(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "m")
        await wait_for(lambda: job(api, "m-stage1"), what="Job")
        api.patch_object(TRAININGS, "default", "m", {"spec": {"numberOfSteps": 150, "stage2NumberOfSteps": 500}})
        await wait_for(lambda: status(api, "m").get("observedGeneration") == 2, what="generation 2 observed")
        assert "--number_of_steps=100" in job(api, "m-stage1")["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]
        assert status(api, "m")["target"] == 100  # the running Job's target
        complete_job(api, "m-stage1")
        await wait_for(lambda: job(api, "m-stage2"), what="stage 2")
        assert "--number_of_steps=500" in job(api, "m-stage2")["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]


@pytest.mark.slow
async def test_restart_in_every_state_creates_no_duplicates(tmp_path: Path) -> None:
    from im2txt_operator.jobs import Owner, build_job

    async with emulator(tmp_path) as api:
        # Created while the operator is down.
        new_training(api, "r")
        uid = new_training(api, "x")["metadata"]["uid"]
        new_training(api, "f")
        async with operator(api, tmp_path):
            await wait_for(lambda: jobs(api) == ["f-stage1", "r-stage1", "x-stage1"], what="stage-1 Jobs")
            await wait_for(lambda: all(status(api, n).get("phase") == "Running" for n in "rxf"), what="Running")
            # kopf posts Events from a queue after the status write; a SIGKILL in between loses the Event
            # (Events are best-effort), so wait for them: below, restarts must not post them again.
            await wait_for(lambda: all("Stage1Started" in event_reasons(api, n) for n in "rxf"), what="Events")
        # Killed while stage 1 runs: a restart adopts, creates nothing.
        async with operator(api, tmp_path) as op:
            await op.reconciled(3)  # each training was looked at: only then does "nothing more" mean something
            await still(lambda: jobs(api) == ["f-stage1", "r-stage1", "x-stage1"], 1.5)
        # Killed; stage 1 succeeds while it is down (r). For x, it died right after creating stage 2's Job
        # and before writing status. f's Job fails while it is down.
        complete_job(api, "r-stage1")
        complete_job(api, "x-stage1")
        api.create_object(JOBS, build_job(Owner("x", "default", uid), parse_spec(status_spec(api, "x")), 2))
        fail_job(api, "f-stage1")
        async with operator(api, tmp_path):
            await wait_for(lambda: status(api, "r").get("stage") == 2 and status(api, "x").get("stage") == 2,
                           what="stage 2 in status")
            await wait_for(lambda: status(api, "f").get("phase") == "Failed", what="f Failed")
            await wait_for(lambda: "Stage2Started" in event_reasons(api, "r"), what="r's Stage2Started Event")
            await still(lambda: jobs(api) == ["f-stage1", "r-stage1", "r-stage2", "x-stage1", "x-stage2"], 1.0)
        # Stage 2 finishes while it is down; after a restart: Succeeded; after another: nothing changes.
        complete_job(api, "r-stage2")
        async with operator(api, tmp_path):
            await wait_for(lambda: status(api, "r").get("phase") == "Succeeded", what="Succeeded")
            await wait_for(lambda: (status(api, "r").get("export") or {}).get("phase") == "Running", what="export")
            await wait_for(lambda: "ExportStarted" in event_reasons(api, "r"), what="r's ExportStarted Event")
        writes = dict(api.writes)
        async with operator(api, tmp_path) as op:
            await op.reconciled(3)
            await still(lambda: dict(api.writes) == writes, 1.5)  # a quiet restart writes nothing at all
        assert jobs(api) == ["f-stage1", "r-export", "r-stage1", "r-stage2", "x-stage1", "x-stage2"]
        assert event_reasons(api, "r").count("Stage1Started") == 1
        assert event_reasons(api, "r").count("Stage2Started") == 1
        assert event_reasons(api, "r").count("ExportStarted") == 1
        assert event_reasons(api, "x").count("Stage2Started") <= 1
        assert status(api, "f")["phase"] == "Failed" and status(api, "x")["phase"] == "Running"


def status_spec(api, name: str):  # type: ignore[no-untyped-def]
    return api.get_object(TRAININGS, "default", name)["spec"]


async def test_metrics_and_single_namespace(tmp_path: Path) -> None:
    import aiohttp

    async with emulator(tmp_path) as api, operator(api, tmp_path, args=("--namespace", "ml")) as op:
        new_training(api, "here", ns="ml")
        new_training(api, "elsewhere", ns="default")
        await wait_for(lambda: job(api, "here-stage1", ns="ml"), what="Job in the watched namespace")
        complete_job(api, "here-stage1", ns="ml")
        await wait_for(lambda: job(api, "here-stage2", ns="ml"), what="stage 2")
        await still(lambda: job(api, "elsewhere-stage1") is None, 0.5)  # other namespaces are not ours
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{op.metrics_port}/metrics") as r:
            text = await r.text()
        assert 'im2txt_trainings{phase="Running"} 1.0' in text
        assert 'im2txt_stage_transitions_total{outcome="started",stage="1"} 1.0' in text
        assert 'im2txt_stage_transitions_total{outcome="started",stage="2"} 1.0' in text
        assert 'im2txt_stage_duration_seconds_count{stage="1"} 1.0' in text
        assert 'im2txt_api_writes_total{kind="job"} 2.0' in text


async def test_a_diverged_loss_is_a_condition_and_one_warning(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        new_training(api, "coco")
        await wait_for(lambda: status(api, "coco").get("phase") == "Running", what="Running")
        pod = start_pod(api, "coco-stage1", "global step 40: loss = 2.3 (0.50 sec/step)\n")
        await wait_for(lambda: status(api, "coco").get("loss") == 2.3, what="the loss")
        api.set_log("default", pod, "trainer", "global step 40: loss = 2.3 (0.50 sec/step)\n"
                                               "global step 41: loss = nan (0.50 sec/step)\n")
        diverged = await wait_for(lambda: condition(api, "coco", "LossDiverged").get("status") == "True"
                                  and condition(api, "coco", "LossDiverged"), what="LossDiverged")
        assert diverged["message"].startswith("global step 41: loss = nan")
        assert "loss" not in status(api, "coco") and status(api, "coco")["step"] == 41
        await still(lambda: True, 1.5)  # several progress reads of the same NaN
        assert event_reasons(api, "coco").count("LossDiverged") == 1
        # A transition keeps the condition (the lifecycle owns only its own conditions).
        complete_job(api, "coco-stage1")
        await wait_for(lambda: status(api, "coco").get("stage") == 2, what="stage 2")
        assert condition(api, "coco", "LossDiverged")["status"] == "True"


async def test_tensorboard_follows_the_spec(tmp_path: Path) -> None:
    deployments, services = ("apps", "v1", "deployments"), ("", "v1", "services")
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        created = new_training(api, "coco", {"tensorboard": {"enabled": True}})
        await wait_for(lambda: status(api, "coco").get("tensorboard"), what="status.tensorboard")
        assert status(api, "coco")["tensorboard"] == "http://coco-tensorboard.default.svc:6006"
        deployment = api.get_object(deployments, "default", "coco-tensorboard")
        service = api.get_object(services, "default", "coco-tensorboard")
        for obj in (deployment, service):
            assert obj["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        api.patch_object(TRAININGS, "default", "coco", {"spec": {"tensorboard": {"enabled": False}}})
        await wait_for(lambda: "tensorboard" not in status(api, "coco"), what="status.tensorboard removed")
        assert api.get_object(deployments, "default", "coco-tensorboard") is None
        assert api.get_object(services, "default", "coco-tensorboard") is None
        assert job(api, "coco-stage1")  # the training itself goes on
