"""controller.reconcile: read, decide, act, one status patch, then Events, on an in-memory Kube."""

from __future__ import annotations

from typing import Any

from fake_kube import NOW, SPEC, FakeKube, context, training

from im2txt_operator import conditions as cond
from im2txt_operator.controller.reconcile import reconcile

KEY = ("ml", "coco")


def setup(*bodies: dict[str, Any]) -> tuple[Any, FakeKube, list[tuple[str, str, str]]]:
    kube = FakeKube(*bodies)
    ctx, events = context(kube)
    for body in bodies:
        ctx.cache.saw((body["metadata"]["namespace"], body["metadata"]["name"]), body)
    return ctx, kube, events


def complete(kube: FakeKube, ctx: Any, job: str, role: str) -> None:
    """The Job controller's part: the Job completes; its watch event reaches the cache."""
    done = kube.jobs["ml", job]
    done["status"] = {"startTime": NOW, "completionTime": NOW, "succeeded": 1,
                      "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": NOW}]}
    ctx.cache.get(KEY).jobs[role] = dict(done, metadata={**done["metadata"], "resourceVersion": "999"})


async def test_a_new_training_costs_three_writes_job_status_and_an_event() -> None:
    ctx, kube, events = setup(training())
    await reconcile(ctx, KEY)
    # No evaluation yet: it is made once the stage's pod is ready (evaluation.due), not beside a Job just made.
    assert kube.writes() == [("create", "jobs", "coco-stage1"), ("patch_training_status", "ml", "coco")]
    assert events == [("coco", "Normal", "Stage1Started")]
    status = kube.trainings[KEY]["status"]
    assert (status["phase"], status["stage"], status["jobName"], status["target"]) == ("Running", 1, "coco-stage1",
                                                                                      100)
    entry = ctx.cache.get(KEY)
    assert entry.body["status"] == status and entry.is_own(kube.trainings[KEY])  # our write's event is skipped
    # The Job as the cache now has it (no pod ready yet) says what the decision to create it said: nothing written.
    await reconcile(ctx, KEY)
    assert len(kube.writes()) == 2 and len(events) == 1
    job = entry.jobs["stage1"]
    entry.jobs["stage1"] = {**job, "metadata": {**job["metadata"], "resourceVersion": "998"},
                            "status": {"active": 1, "ready": 1}}  # its pod runs: the evaluation is made
    await reconcile(ctx, KEY)
    assert kube.writes()[2:] == [("create", "deployments", "coco-evaluation"), ("patch_training_status", "ml", "coco")]
    assert kube.trainings[KEY]["status"]["evaluation"] == {"generation": 1} and len(events) == 1
    await reconcile(ctx, KEY)  # level-triggered: nothing changed, nothing written (the evaluation once a generation)
    assert len(kube.writes()) == 4 and len(events) == 1


async def test_a_finished_stage_reads_its_pods_once_then_starts_the_next() -> None:
    ctx, kube, events = setup(training())
    await reconcile(ctx, KEY)
    kube.pods["coco-stage1"] = [{"metadata": {"name": "coco-stage1-a", "creationTimestamp": NOW},
                                 "status": {"phase": "Succeeded"}}]
    kube.logs["coco-stage1-a", "trainer"] = "global step 100: loss = 2.5 (0.1 sec/step)\n"
    kube.logs["coco-stage1-a", "sync"] = "published checkpoint model.ckpt-100\n"
    complete(kube, ctx, "coco-stage1", "stage1")
    before = len(kube.calls)
    await reconcile(ctx, KEY)
    # Stage 1 succeeded: the training has trained, and its evaluation is made after stage 2's Job.
    assert kube.writes()[2:] == [("create", "jobs", "coco-stage2"), ("create", "deployments", "coco-evaluation"),
                                 ("patch_training_status", "ml", "coco")]
    # Stage 2's Job first: its start waits for no read of stage 1's pods and logs (they feed the status patch)
    advance = [c[0] for c in kube.calls[before:] if c[0] in ("create", "list_pods", "read_log")]
    assert advance[0] == "create" and advance.count("list_pods") == 1 and advance.count("read_log") == 2
    # From the server's cache (the pod shows it ended): no consistent read from etcd.
    assert kube.freshness[-1] == ("coco-stage1", "0")
    assert events[-1] == ("coco", "Normal", "Stage2Started")
    status = kube.trainings[KEY]["status"]
    assert (status["stage"], status["step"], status["loss"], status["uploadedStep"]) == (2, 100, 2.5, 100)
    assert cond.is_true(status["conditions"], "Stage1Complete")
    reads = [c for c in kube.calls if c[0] in ("list_pods", "read_log")]
    await reconcile(ctx, KEY)  # stage 1's end is recorded: its pods are not read again
    assert [c for c in kube.calls if c[0] in ("list_pods", "read_log")] == reads


async def test_a_stage_whose_ended_pod_the_cache_does_not_show_yet_is_read_again_from_etcd() -> None:
    ctx, kube, _ = setup(training())
    await reconcile(ctx, KEY)
    kube.pods["coco-stage1"] = [{"metadata": {"name": "coco-stage1-a", "creationTimestamp": NOW},
                                 "status": {"phase": "Running"}}]  # the cache lags behind the Job's Complete
    complete(kube, ctx, "coco-stage1", "stage1")
    await reconcile(ctx, KEY)
    assert kube.freshness[-2:] == [("coco-stage1", "0"), ("coco-stage1", None)]  # then a consistent read


async def test_an_invalid_spec_writes_the_problem_and_no_job() -> None:
    ctx, kube, events = setup(training(spec={**SPEC, "dataPath": "s3://nope/"}))
    await reconcile(ctx, KEY)
    assert kube.writes() == [("patch_training_status", "ml", "coco")] and not kube.jobs
    ready = cond.find(kube.trainings[KEY]["status"]["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert events == [("coco", "Warning", "InvalidSpec")]


async def test_the_younger_of_two_trainings_on_one_output_waits() -> None:
    older = training("a", uid="uid-a")
    older["metadata"]["creationTimestamp"] = "2026-12-01T00:00:00Z"
    younger = training("coco", uid="uid-coco")
    younger["metadata"]["creationTimestamp"] = "2026-12-02T00:00:00Z"
    ctx, kube, events = setup(older, younger)
    await reconcile(ctx, KEY)
    assert not kube.jobs and events == [("coco", "Warning", "OutputPathInUse")]
    ready = cond.find(kube.trainings[KEY]["status"]["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "OutputPathInUse" and "training ml/a" in ready["message"]


def secret_missing_pod() -> dict[str, Any]:
    return {"metadata": {"name": "coco-stage1-a", "creationTimestamp": NOW}, "status": {
        "phase": "Pending", "containerStatuses": [{"name": "trainer", "state": {"waiting": {
            "reason": "CreateContainerConfigError", "message": 'secret "ufile-keys" not found'}}}]}}


async def test_after_a_restart_a_pod_problem_in_status_is_read_again_before_status_is_written() -> None:
    ctx, kube, events = setup(training())
    await reconcile(ctx, KEY)  # stage 1's Job
    kube.pods["coco-stage1"] = [secret_missing_pod()]
    ctx.cache.get(KEY).read_pod_problem("coco-stage1", kube.pods["coco-stage1"])
    await reconcile(ctx, KEY)
    assert events[-1] == ("coco", "Warning", "SecretNotFound")
    written = len(kube.writes())
    ctx2, _ = context(kube)  # a new operator: a fresh cache, the status as the API has it
    ctx2.cache.entry(KEY).body = kube.trainings[KEY]
    ctx2.cache.get(KEY).jobs["stage1"] = kube.jobs["ml", "coco-stage1"]
    await reconcile(ctx2, KEY)
    assert ("list_pods", "ml", "coco-stage1") in kube.calls and len(kube.writes()) == written  # still missing: same
    kube.pods["coco-stage1"] = []
    ctx3, events3 = context(kube)
    ctx3.cache.entry(KEY).body = kube.trainings[KEY]
    ctx3.cache.get(KEY).jobs["stage1"] = kube.jobs["ml", "coco-stage1"]
    await reconcile(ctx3, KEY)
    assert events3 == [("coco", "Normal", "SpecValid")]  # gone: now it is fixed


async def test_a_failed_write_is_retried_with_backoff() -> None:
    ctx, kube, events = setup(training())
    failing = kube.patch_training_status

    async def once(*args: Any) -> Any:
        kube.patch_training_status = failing  # type: ignore[method-assign]
        raise ConnectionResetError("the API went away")

    kube.patch_training_status = once  # type: ignore[method-assign]
    ctx.queue.delays = (0.01,)
    await reconcile(ctx, KEY)
    entry = ctx.cache.get(KEY)
    assert entry.failures == 1 and entry.retry is not None and not events
    await entry.retry
    assert entry.failures == 0 and kube.trainings[KEY]["status"]["jobName"] == "coco-stage1"
    assert kube.writes().count(("create", "jobs", "coco-stage1")) == 1  # the Job was adopted, not made twice
    # The Event goes with the status write that records the start: the failed one posted none, the retry that wrote
    # it posts the one (a leader that stops between the create and the write loses no Event either).
    assert events == [("coco", "Normal", "Stage1Started")]


async def test_a_job_kueue_suspends_is_never_written_and_reads_queued_without_its_eta_sample() -> None:
    ctx, kube, events = setup(training(spec={**SPEC, "queueName": "gpu-queue"}))
    await reconcile(ctx, KEY)
    assert kube.jobs["ml", "coco-stage1"]["spec"]["suspend"] is True  # created held: Kueue admits it
    entry = ctx.cache.get(KEY)
    entry.sample = (50, 1.0)  # a rate sample from before an eviction: queue time must not count as training
    writes = len(kube.writes())
    for _ in range(3):  # Kueue keeps it suspended: reconciles read, they never write the Job
        await reconcile(ctx, KEY)
    assert [w for w in kube.writes()[writes:] if w[1] == "jobs"] == []
    assert ("list_workloads", "ml", "uid-coco-stage1") in kube.calls  # why it waits: its Workload (none here)
    status = kube.trainings[KEY]["status"]
    assert (status["phase"], status["message"]) == ("Queued", "stage 1 waits for Kueue admission in LocalQueue "
                                                              "gpu-queue")
    assert entry.sample is None and status.get("eta") is None
    assert [e[2] for e in events] == ["Stage1Started"]
