"""controller.wiring: startup makes the one Context in the memo; events reach reconcile; the Jobs index."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest
from fake_kube import SPEC, FakeKube, context, training
from prometheus_client import generate_latest

from im2txt_operator.children import desired
from im2txt_operator.controller import wiring
from im2txt_operator.controller.context import Context
from im2txt_operator.controller.essence import NoEssence
from im2txt_operator.metrics import Metrics
from im2txt_operator.pods import Owner
from im2txt_operator.spec import parse_spec

KEY = ("ml", "coco")
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


async def test_startup_makes_one_context_from_the_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    settings, metrics = kopf.OperatorSettings(), Metrics()
    memo = kopf.Memo(metrics_port=0, metrics=metrics, progress_interval=2.5)
    await wiring.startup(settings=settings, memo=memo)
    ctx = memo["context"]
    assert isinstance(ctx, Context) and ctx.metrics is metrics and ctx.interval == 2.5 and ctx.metrics_port == 0
    assert ctx.kube.base == "http://127.0.0.1:1"
    assert settings.watching.label_selectors["batch", "jobs"] == "app.kubernetes.io/managed-by=im2txt-operator"
    assert settings.posting.level == logging.WARNING
    assert isinstance(settings.persistence.diffbase_storage, NoEssence)  # kopf's change detection is off
    assert "im2txt_leader 1.0" in generate_latest(metrics.registry).decode()  # the cli's Metrics, now leading
    await wiring.cleanup(memo=memo)


def memo_with(*bodies: dict[str, Any]) -> tuple[kopf.Memo, FakeKube, list[tuple[str, str, str]]]:
    kube = FakeKube(*bodies)
    ctx, events = context(kube, interval=3600)
    return kopf.Memo(context=ctx), kube, events


async def index_of(kube: FakeKube) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for job in kube.jobs.values():
        for key, body in (await wiring.training_jobs(body=job) or {}).items():  # type: ignore[arg-type]
            out.setdefault(key, []).append(body)
    return out


async def test_a_training_event_reconciles_and_our_own_writes_event_does_not() -> None:
    memo, kube, events = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, training_jobs={}, memo=memo)
    assert ("create", "jobs", "coco-stage1") in kube.writes() and len(events) == 1
    calls = len(kube.calls)
    await wiring.training_event(event={"type": "MODIFIED", "object": copy.deepcopy(kube.trainings[KEY])},
                                training_jobs={}, memo=memo)
    assert len(kube.calls) == calls  # the answer of our own status patch: nothing to do
    await wiring.training_event(event={"type": "DELETED", "object": training()}, training_jobs={}, memo=memo)
    assert memo["context"].cache.get(KEY) is None
    await wiring.cleanup(memo=memo)
    assert kube.closed and memo["context"].loop_task.cancelled()


async def test_after_a_restart_the_first_reconcile_sees_the_jobs_in_the_index() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, training_jobs={}, memo=memo)
    restarted, _ = context(kube, interval=3600)
    memo2 = kopf.Memo(context=restarted)
    await wiring.training_event(event={"type": "ADDED", "object": copy.deepcopy(kube.trainings[KEY])},
                                training_jobs=await index_of(kube), memo=memo2)
    assert [c for c in kube.calls if c[:2] == ("create", "jobs")] == [("create", "jobs", "coco-stage1")]  # no 409 try
    assert restarted.cache.get(KEY).jobs["stage1"]["metadata"]["name"] == "coco-stage1"
    await wiring.cleanup(memo=memo)
    await wiring.cleanup(memo=memo2)


async def test_a_deleted_job_is_made_again_only_while_its_training_exists() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, training_jobs={}, memo=memo)
    job = kube.jobs.pop(("ml", "coco-stage1"))
    await wiring.job_event(event={"type": "DELETED", "object": job}, training_jobs={}, memo=memo)
    assert [c for c in kube.calls if c[:2] == ("create", "jobs")] == [("create", "jobs", "coco-stage1")] * 2
    del kube.trainings[KEY]  # the training goes: the garbage collector deletes its Job after it
    job = kube.jobs.pop(("ml", "coco-stage1"))
    await wiring.job_event(event={"type": "DELETED", "object": job}, training_jobs={}, memo=memo)
    assert memo["context"].cache.get(KEY) is None
    assert len([c for c in kube.calls if c[:2] == ("create", "jobs")]) == 2
    await wiring.job_event(event={"type": "MODIFIED", "object": job}, training_jobs={}, memo=memo)
    assert memo["context"].cache.get(KEY) is None  # a Job of a training not in the cache makes no entry
    await wiring.cleanup(memo=memo)


async def test_a_job_event_reconciles_only_when_something_a_reconcile_reads_changed() -> None:
    memo, kube, _ = memo_with(training())
    await wiring.training_event(event={"type": "ADDED", "object": training()}, training_jobs={}, memo=memo)
    ctx = memo["context"]

    def reconciles() -> float:
        return ctx.metrics.reconciles._value.get()

    job = copy.deepcopy(kube.jobs[("ml", "coco-stage1")])
    before = reconciles()
    # The Job controller's bookkeeping while a pod ends: nothing the lifecycle reads.
    job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 100)
    job["status"] = {"uncountedTerminatedPods": {"succeeded": ["a-pod"]}, "terminating": 0}
    await wiring.job_event(event={"type": "MODIFIED", "object": copy.deepcopy(job)}, training_jobs={}, memo=memo)
    assert reconciles() == before
    job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1)
    job["status"] = {"active": 1, "startTime": "2026-12-07T00:00:00Z"}  # the stage's pod runs
    await wiring.job_event(event={"type": "MODIFIED", "object": copy.deepcopy(job)}, training_jobs={}, memo=memo)
    assert reconciles() == before + 1
    job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1)
    job["metadata"]["ownerReferences"] = []  # orphaned: no longer the training's to drive
    await wiring.job_event(event={"type": "MODIFIED", "object": copy.deepcopy(job)}, training_jobs={}, memo=memo)
    assert reconciles() == before + 2
    await wiring.cleanup(memo=memo)


async def test_the_index_keys_our_jobs_by_training() -> None:
    job = {"metadata": {"namespace": "ml", "name": "coco-stage2",
                        "labels": {"im2txt.dev/training": "coco", "im2txt.dev/stage": "2"},
                        "ownerReferences": [{"kind": "Im2txtTraining", "name": "coco", "uid": "u",
                                             "controller": True}]}}
    assert await wiring.training_jobs(body=job) == {KEY: job}  # type: ignore[arg-type]
    assert await wiring.training_jobs(body={"metadata": {"namespace": "ml", "labels": {}}}) is None  # type: ignore[arg-type]


async def test_the_jobs_index_holds_only_jobs_a_training_controls() -> None:
    """Anyone who may create Jobs may put the operator's labels on one: such a Job never enters the index."""
    (job,) = desired(Owner("coco", "ml", "uid-coco"), parse_spec(SPEC))["stage1"]
    assert list(await wiring.training_jobs(body=job) or {}) == [("ml", "coco")]  # type: ignore[arg-type]
    forged = {**job, "metadata": {**job["metadata"], "ownerReferences": []}}
    assert await wiring.training_jobs(body=forged) is None  # type: ignore[arg-type]
    elsewhere = {**job, "metadata": {**job["metadata"], "labels": {**job["metadata"]["labels"],
                                                                   "im2txt.dev/training": "other"}}}
    assert await wiring.training_jobs(body=elsewhere) is None  # type: ignore[arg-type]
