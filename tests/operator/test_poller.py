"""controller.poller: the progress look at a running stage, pruning, and the loop, on an in-memory Kube."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fake_kube import NOW, SPEC, FakeKube, context, training

from im2txt_operator import conditions as cond
from im2txt_operator.api_budget import REQUESTS_PER_LOOK, ApiBudget
from im2txt_operator.controller import poller
from im2txt_operator.controller.reconcile import reconcile

KEY = ("ml", "coco")
POD = {"metadata": {"name": "coco-stage1-a", "creationTimestamp": NOW}, "status": {"phase": "Running"}}


async def running(log: str) -> tuple[Any, FakeKube, list[tuple[str, str, str]]]:
    """A training whose stage 1 runs (made by a reconcile), its pod logging ``log``."""
    kube = FakeKube(training())
    ctx, events = context(kube)
    ctx.cache.entry(KEY).body = training()
    await reconcile(ctx, KEY)
    kube.pods["coco-stage1"] = [POD]
    kube.logs["coco-stage1-a", "trainer"] = log
    kube.logs["coco-stage1-a", "sync"] = "published checkpoint model.ckpt-20\n"
    return ctx, kube, events


async def test_progress_is_read_from_the_pods_and_written_in_one_patch() -> None:
    ctx, kube, _ = await running("global step 40: loss = 2.25 (0.5 sec/step)\n")
    before = len(kube.writes())
    await poller.look(ctx, KEY, ctx.cache.get(KEY))
    # The trainer logged a step: it has trained, and its evaluation is made (evaluation.due) before the patch.
    assert kube.writes()[before:] == [("create", "deployments", "coco-evaluation"),
                                      ("patch_training_status", "ml", "coco")]
    status = kube.trainings[KEY]["status"]
    assert (status["step"], status["progress"], status["eta"], status["loss"], status["uploadedStep"]) == (
        40, 40.0, "30s", 2.25, 20)
    assert ctx.cache.get(KEY).sample[0] == 40  # type: ignore[index]
    await poller.look(ctx, KEY, ctx.cache.get(KEY))  # nothing new in the log: nothing written
    assert len(kube.writes()) == before + 2


async def test_a_diverged_loss_posts_one_warning() -> None:
    ctx, kube, events = await running("global step 40: loss = nan (0.5 sec/step)\n")
    await poller.look(ctx, KEY, ctx.cache.get(KEY))
    await poller.look(ctx, KEY, ctx.cache.get(KEY))
    assert events[1:] == [("coco", "Warning", "LossDiverged")]
    assert cond.is_true(kube.trainings[KEY]["status"]["conditions"], "LossDiverged")


async def test_a_pod_that_cannot_start_reconciles_the_training() -> None:
    ctx, kube, events = await running("")
    kube.pods["coco-stage1"] = [{"metadata": {"name": "coco-stage1-a", "creationTimestamp": NOW}, "status": {
        "phase": "Pending", "containerStatuses": [{"name": "trainer", "state": {"waiting": {
            "reason": "CreateContainerConfigError", "message": 'secret "ufile-keys" not found'}}}]}}]
    await poller.look(ctx, KEY, ctx.cache.get(KEY))
    assert events[-1] == ("coco", "Warning", "SecretNotFound")
    assert not [c for c in kube.calls if c[0] == "read_log"]  # the pod list told it all


async def test_prune_forgets_trainings_the_api_no_longer_has() -> None:
    kube = FakeKube(training("kept", uid="u1"), training("remade", uid="u2-new"))
    ctx, _ = context(kube)
    for rv, (name, uid) in enumerate((("kept", "u1"), ("remade", "u2"), ("gone", "u3"))):
        ctx.cache.entry(("ml", name)).body = training(name, uid=uid)
        ctx.cache.get(("ml", name)).body["metadata"]["resourceVersion"] = str(90 + rv)
    ctx.checks.seen[("ml", "claim")] = -1e9  # expired long ago
    await poller.prune(ctx)
    assert sorted(k[1] for k, _ in ctx.cache.items()) == ["kept"] and not ctx.checks.seen
    assert [c for c in kube.calls if c[0] == "training_uids"] == [("training_uids", "ml")]  # one list a namespace
    # From the server's cache, but no older than the newest training the watch showed (92): it holds them all.
    assert kube.freshness == [("ml", "92")]


async def test_the_loop_looks_at_running_trainings_every_interval() -> None:
    ctx, kube, _ = await running("global step 60: loss = 2.0 (0.5 sec/step)\n")
    ctx.interval = 0.01
    task = asyncio.create_task(poller.run(ctx))
    for _ in range(200):
        if (kube.trainings[KEY]["status"]).get("step") == 60:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert kube.trainings[KEY]["status"]["step"] == 60


async def test_a_round_spends_only_the_progress_budget_oldest_look_first() -> None:
    """Five running trainings, a budget of two looks a round: each round reads two others, so every training is
    read once in three rounds and the requests per round stay flat (api_budget)."""
    names = [f"t{i}" for i in range(5)]

    def one(n: str) -> dict[str, Any]:  # each its own output folder (a shared one makes the younger wait)
        return training(n, uid=f"uid-{n}", spec={**SPEC, "outputPath": f"ufile://out/{n}/"})

    kube = FakeKube(*(one(n) for n in names))
    ctx, _ = context(kube, interval=30.0)
    ctx.budget = ApiBudget(progress_rps=2 * REQUESTS_PER_LOOK / ctx.interval)  # two looks a round
    for n in names:
        ctx.cache.entry(("ml", n)).body = one(n)
        await reconcile(ctx, ("ml", n))
        kube.pods[f"{n}-stage1"] = [{"metadata": {"name": f"{n}-a", "creationTimestamp": NOW},
                                     "status": {"phase": "Running"}}]
        kube.logs[f"{n}-a", "trainer"] = "global step 7: loss = 2.0 (0.5 sec/step)\n"
    ctx.cache.entry(("ml", "done")).body = training("done", status={"phase": "Succeeded", "conditions": [
        {"type": "Ready", "status": "True"}]})  # nothing to read: never chosen
    looked_at: dict[tuple[str, str], float] = {}
    rounds = []
    for _ in range(3):
        kube.calls.clear()
        chosen = await poller.one_round(ctx, looked_at)
        rounds.append(sorted(c[2] for c in kube.calls if c[0] == "list_pods"))
        assert len(chosen) == 2 and ("ml", "done") not in chosen
    assert [len(r) for r in rounds] == [2, 2, 2]  # the budget holds in every round
    assert {job for r in rounds for job in r} == {f"{n}-stage1" for n in names}  # and every training is read
    # Spread over the round: the two looks start half a round apart, not together.
    ctx.budget, starts = ApiBudget(progress_rps=2 * REQUESTS_PER_LOOK / ctx.interval), []
    real = kube.list_pods

    async def timed(*args: Any) -> Any:
        starts.append(asyncio.get_running_loop().time())
        return await real(*args)

    kube.list_pods = timed  # type: ignore[method-assign]
    began = asyncio.get_running_loop().time()
    await poller.one_round(ctx, looked_at, spread=0.4)
    # The second look waits its share of the round (a sleep never ends early; a busy machine only makes it later).
    assert len(starts) == 2 and starts[1] - began >= 0.19, (began, starts)


def test_a_training_wants_a_look_only_when_there_is_something_to_read() -> None:
    from im2txt_operator.controller.cache import Entry

    ready = [{"type": "Ready", "status": "True"}]
    assert poller.wants_a_look(Entry(body={"status": {"phase": "Running", "conditions": ready}}))
    assert not poller.wants_a_look(Entry(body={"status": {"phase": "Succeeded", "conditions": ready}}))
    assert not poller.wants_a_look(Entry(body={"status": {"phase": "Failed"}}))
    assert poller.wants_a_look(Entry(body={"status": {"phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False"}]}}))  # a spec problem to check again


async def test_a_job_without_pods_is_asked_why_only_once_it_should_have_them() -> None:
    """The Job controller's FailedCreate Events are read for a Job with no pod only after CREATE_GRACE_SECONDS:
    a younger Job's pods are most likely being made (and an Events list is dear to the server)."""
    from im2txt_operator import names
    from im2txt_operator.pod_problems import CREATE_GRACE_SECONDS

    ctx, kube, _ = await running("")
    kube.pods["coco-stage1"] = []
    kube.events["coco-stage1"] = [{"reason": "FailedCreate", "lastTimestamp": NOW,
                                   "message": 'pods "coco-stage1-x" is forbidden: exceeded quota: no-pods'}]
    entry = ctx.cache.get(KEY)
    entry.jobs[names.stage_role(1)]["metadata"]["creationTimestamp"] = NOW
    entry.jobs[names.stage_role(1)]["status"] = {"startTime": NOW}  # the Job controller synced it
    await poller.look(ctx, KEY, entry)  # the clock reads NOW: the Job was just made
    assert not [c for c in kube.calls if c[0] == "failed_creates"]
    assert cond.find(kube.trainings[KEY]["status"]["conditions"], "Ready")["reason"] != "PodCreateFailed"
    ctx.now = lambda: f"2026-12-06T12:00:{int(CREATE_GRACE_SECONDS):02d}Z"
    await poller.look(ctx, KEY, entry)
    assert [c for c in kube.calls if c[0] == "failed_creates"] == [("failed_creates", "ml", "coco-stage1")]
    ready = cond.find(kube.trainings[KEY]["status"]["conditions"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCreateFailed") and "exceeded quota" in ready["message"]


async def test_the_prune_runs_every_round_up_to_500_trainings_then_every_ceil_n_over_500_rounds(
        monkeypatch: Any) -> None:
    """The prune's list costs the server about 0.5 ms a training: at 5,000 it runs every 10th round."""
    assert [poller.prune_every(n) for n in (0, 1, 500, 501, 1000, 5000)] == [1, 1, 1, 2, 2, 10]
    ctx, _ = context(FakeKube(), interval=0.001)
    for i in range(1001):  # 3 rounds to a prune
        ctx.cache.entry(("ml", f"t{i}"))
    pruned: list[bool] = []

    async def round_of(_ctx: Any, _looked_at: Any, spread: float = 0.0, pruning: bool = True) -> list[Any]:
        pruned.append(pruning)
        return []

    monkeypatch.setattr(poller, "one_round", round_of)
    task = asyncio.create_task(poller.run(ctx))
    try:
        while len(pruned) < 7:
            await asyncio.sleep(0.001)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert pruned[:7] == [False, False, True, False, False, True, False]
