"""controller.wiring: startup makes the one Context in the memo and lists our Jobs; events reach reconcile; the
Jobs index."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kopf
import pytest
from aiohttp import web
from fake_kube import SPEC, FakeKube, context, training
from prometheus_client import generate_latest

from im2txt_operator.children import desired
from im2txt_operator.controller import wiring
from im2txt_operator.controller.cache import slim
from im2txt_operator.controller.context import Context
from im2txt_operator.controller.essence import NoEssence
from im2txt_operator.controller.job_watch import JobIndex
from im2txt_operator.metrics import Metrics
from im2txt_operator.pods import Owner
from im2txt_operator.spec import parse_spec

KEY = ("ml", "coco")


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # a watch still open ends with the test
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def wait_for(ok: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if ok():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not in time")
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


async def test_startup_makes_one_context_from_the_memo_and_lists_our_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, dict[str, str]]] = []

    async def jobs(request: web.Request) -> web.Response:
        asked.append((request.path, dict(request.query)))
        if "watch" in request.query:
            await asyncio.sleep(3600)
        return web.json_response({"kind": "JobList", "metadata": {"resourceVersion": "7"}, "items": [job()]})

    app = web.Application()
    app.router.add_get("/apis/batch/v1/namespaces/{namespace}/jobs", jobs)
    async with serving(app) as url:
        (tmp_path / "kubeconfig").write_text(KUBECONFIG.replace("http://127.0.0.1:1", url))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        settings, metrics = kopf.OperatorSettings(), Metrics()
        memo = kopf.Memo(metrics_port=0, metrics=metrics, progress_interval=2.5, scope=("ml",))
        await wiring.startup(settings=settings, memo=memo)
        ctx = memo["context"]
        assert isinstance(ctx, Context) and ctx.metrics is metrics and ctx.interval == 2.5 and ctx.metrics_port == 0
        assert ctx.kube.base == url
        # Before any handler runs, the index holds every Job of ours; then the watch goes on from the list's version.
        assert [j["metadata"]["name"] for j in ctx.jobs.get(KEY)] == ["coco-stage2"]
        await wait_for(lambda: len(asked) == 2)
        selector = {"labelSelector": "app.kubernetes.io/managed-by=im2txt-operator"}
        assert asked[0] == ("/apis/batch/v1/namespaces/ml/jobs", {**selector, "limit": "500"})
        assert asked[1][1] == {**selector, "watch": "true", "resourceVersion": "7", "allowWatchBookmarks": "true",
                               "timeoutSeconds": "600"}
        assert settings.posting.level == logging.WARNING
        assert isinstance(settings.persistence.diffbase_storage, NoEssence)  # kopf's change detection is off
        assert "im2txt_leader 1.0" in generate_latest(metrics.registry).decode()  # the cli's Metrics, now leading
        await wiring.cleanup(memo=memo)
        assert len(ctx.background) == 2 and all(t.cancelled() for t in ctx.background)  # the watch, the lag probe


async def job_event(memo: kopf.Memo, kind: str, obj: dict[str, Any]) -> None:
    """One watch event of a Job, as job_watch hands it over (slim), and all it started."""
    ctx = memo["context"]
    wiring.job_changed(ctx, kind, slim(obj))
    await ctx.settled()


def memo_with(*bodies: dict[str, Any]) -> tuple[kopf.Memo, FakeKube, list[tuple[str, str, str]]]:
    kube = FakeKube(*bodies)
    ctx, events = context(kube, interval=3600)
    return kopf.Memo(context=ctx), kube, events


async def test_a_training_event_reconciles_and_our_own_writes_event_does_not() -> None:
    memo, kube, events = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, memo=memo)
    assert ("create", "jobs", "coco-stage1") in kube.writes() and len(events) == 1
    calls = len(kube.calls)
    await wiring.training_event(event={"type": "MODIFIED", "object": copy.deepcopy(kube.trainings[KEY])}, memo=memo)
    assert len(kube.calls) == calls  # the answer of our own status patch: nothing to do
    await wiring.training_event(event={"type": "DELETED", "object": training()}, memo=memo)
    assert memo["context"].cache.get(KEY) is None
    await wiring.cleanup(memo=memo)
    assert kube.closed and memo["context"].loop_task.cancelled()


async def test_after_a_restart_the_first_reconcile_sees_the_jobs_in_the_index() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, memo=memo)
    restarted, _ = context(kube, interval=3600)
    for job in kube.jobs.values():  # what startup's list put in the index
        restarted.jobs.put(slim(job))
    memo2 = kopf.Memo(context=restarted)
    await wiring.training_event(event={"type": "ADDED", "object": copy.deepcopy(kube.trainings[KEY])}, memo=memo2)
    assert [c for c in kube.calls if c[:2] == ("create", "jobs")] == [("create", "jobs", "coco-stage1")]  # no 409 try
    assert restarted.cache.get(KEY).jobs["stage1"]["metadata"]["name"] == "coco-stage1"
    await wiring.cleanup(memo=memo)
    await wiring.cleanup(memo=memo2)


async def test_a_deleted_job_is_made_again_only_while_its_training_exists() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, memo=memo)
    job = kube.jobs.pop(("ml", "coco-stage1"))
    await job_event(memo, "DELETED", job)
    assert [c for c in kube.calls if c[:2] == ("create", "jobs")] == [("create", "jobs", "coco-stage1")] * 2
    del kube.trainings[KEY]  # the training goes: the garbage collector deletes its Job after it
    job = kube.jobs.pop(("ml", "coco-stage1"))
    await job_event(memo, "DELETED", job)
    assert memo["context"].cache.get(KEY) is None
    assert len([c for c in kube.calls if c[:2] == ("create", "jobs")]) == 2
    await job_event(memo, "MODIFIED", job)
    assert memo["context"].cache.get(KEY) is None  # a Job of a training not in the cache makes no entry
    await wiring.cleanup(memo=memo)


async def test_a_job_event_reconciles_only_when_something_a_reconcile_reads_changed() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, memo=memo)
    ctx = memo["context"]

    def reconciles() -> float:
        return ctx.metrics.reconciles._value.get()

    job = copy.deepcopy(kube.jobs[("ml", "coco-stage1")])
    before = reconciles()
    # The Job controller's bookkeeping while a pod ends: nothing the lifecycle reads.
    job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 100)
    job["status"] = {"uncountedTerminatedPods": {"succeeded": ["a-pod"]}, "terminating": 0}
    await job_event(memo, "MODIFIED", copy.deepcopy(job))
    assert reconciles() == before
    job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1)
    job["status"] = {"active": 1, "startTime": "2026-12-07T00:00:00Z"}  # the stage's pod runs
    await job_event(memo, "MODIFIED", copy.deepcopy(job))
    assert reconciles() == before + 1
    job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1)
    job["metadata"]["ownerReferences"] = []  # orphaned: no longer the training's to drive
    await job_event(memo, "MODIFIED", copy.deepcopy(job))
    assert reconciles() == before + 2
    await wiring.cleanup(memo=memo)


def job(owner: str = "u") -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": "coco-stage2", "uid": "j2", "resourceVersion": "5",
                         "labels": {"im2txt.dev/training": "coco", "im2txt.dev/stage": "2"},
                         "ownerReferences": [{"kind": "Im2txtTraining", "name": "coco", "uid": owner,
                                              "controller": True}]}}


def test_the_index_keys_our_jobs_by_training() -> None:
    index = JobIndex()
    index.put(job())
    index.put({"metadata": {"namespace": "ml", "name": "x", "uid": "x", "labels": {}}})
    assert index.get(KEY) == (job(),) and len(index) == 1
    index.drop(job())
    assert index.get(KEY) == () and len(index) == 0


def test_the_jobs_index_holds_only_jobs_a_training_controls() -> None:
    """Anyone who may create Jobs may put the operator's labels on one: such a Job never enters the index."""
    (made,) = desired(Owner("coco", "ml", "uid-coco"), parse_spec(SPEC))["stage1"]
    made["metadata"]["uid"] = "j1"
    index = JobIndex()
    index.put(made)
    assert [j["metadata"]["name"] for j in index.get(KEY)] == ["coco-stage1"]
    forged = {**made, "metadata": {**made["metadata"], "ownerReferences": []}}
    index.put(forged)  # its owner taken away: it leaves the index
    assert index.get(KEY) == ()
    elsewhere = {**made, "metadata": {**made["metadata"], "uid": "j2", "labels": {
        **made["metadata"]["labels"], "im2txt.dev/training": "other"}}}
    index.put(elsewhere)
    assert index.get(KEY) == () and index.get(("ml", "other")) == ()


async def test_a_burst_of_job_events_is_one_reconcile() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, memo=memo)
    ctx = memo["context"]
    before = ctx.metrics.reconciles._value.get()
    made = copy.deepcopy(kube.jobs[("ml", "coco-stage1")])
    for n in range(1, 6):  # the Job controller's counts, one after another, before the event loop turns
        made["metadata"]["resourceVersion"] = str(int(made["metadata"]["resourceVersion"]) + 1)
        made["status"] = {"active": 1, "ready": n % 2, "startTime": "2026-12-07T00:00:00Z"}
        wiring.job_changed(ctx, "MODIFIED", slim(made))
    await ctx.settled()
    assert ctx.metrics.reconciles._value.get() == before + 1
    assert ctx.cache.get(KEY).jobs["stage1"]["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    made["metadata"]["resourceVersion"] = str(int(made["metadata"]["resourceVersion"]) + 1)  # every write, a new one
    wiring.job_changed(ctx, "MODIFIED", slim({**made, "status": {"active": 0, "failed": 1}}))  # after it: one more
    await ctx.settled()
    assert ctx.metrics.reconciles._value.get() == before + 2
    await wiring.cleanup(memo=memo)
