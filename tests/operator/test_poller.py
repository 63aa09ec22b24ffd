"""controller.poller: the progress look at a running stage, pruning, and the loop, on an in-memory Kube."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fake_kube import NOW, FakeKube, context, training

from im2txt_operator import conditions as cond
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
    await poller.refresh_progress(ctx, KEY, ctx.cache.get(KEY))
    assert kube.writes()[before:] == [("patch_training_status", "ml", "coco")]
    status = kube.trainings[KEY]["status"]
    assert (status["step"], status["progress"], status["eta"], status["loss"], status["uploadedStep"]) == (
        40, 40.0, "30s", 2.25, 20)
    assert ctx.cache.get(KEY).sample[0] == 40  # type: ignore[index]
    await poller.refresh_progress(ctx, KEY, ctx.cache.get(KEY))  # nothing new in the log: nothing written
    assert len(kube.writes()) == before + 1


async def test_a_diverged_loss_posts_one_warning() -> None:
    ctx, kube, events = await running("global step 40: loss = nan (0.5 sec/step)\n")
    await poller.refresh_progress(ctx, KEY, ctx.cache.get(KEY))
    await poller.refresh_progress(ctx, KEY, ctx.cache.get(KEY))
    assert events[1:] == [("coco", "Warning", "LossDiverged")]
    assert cond.is_true(kube.trainings[KEY]["status"]["conditions"], "LossDiverged")


async def test_a_pod_that_cannot_start_reconciles_the_training() -> None:
    ctx, kube, events = await running("")
    kube.pods["coco-stage1"] = [{"metadata": {"name": "coco-stage1-a", "creationTimestamp": NOW}, "status": {
        "phase": "Pending", "containerStatuses": [{"name": "trainer", "state": {"waiting": {
            "reason": "CreateContainerConfigError", "message": 'secret "ufile-keys" not found'}}}]}}]
    await poller.refresh_progress(ctx, KEY, ctx.cache.get(KEY))
    assert events[-1] == ("coco", "Warning", "SecretNotFound")
    assert not [c for c in kube.calls if c[0] == "read_log"]  # the pod list told it all


async def test_prune_forgets_trainings_the_api_no_longer_has() -> None:
    kube = FakeKube(training("kept", uid="u1"), training("remade", uid="u2-new"))
    ctx, _ = context(kube)
    for name, uid in (("kept", "u1"), ("remade", "u2"), ("gone", "u3")):
        ctx.cache.entry(("ml", name)).body = training(name, uid=uid)
    ctx.checks.seen[("ml", "claim")] = -1e9  # expired long ago
    await poller.prune(ctx)
    assert sorted(k[1] for k, _ in ctx.cache.items()) == ["kept"] and not ctx.checks.seen
    assert [c for c in kube.calls if c[0] == "training_uids"] == [("training_uids", "ml")]  # one list a namespace


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
