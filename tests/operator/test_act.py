"""controller.act: the children writes on an in-memory Kube that records every call."""

from __future__ import annotations

from typing import Any

from fake_kube import SPEC, FakeKube, context
from prometheus_client import generate_latest

from im2txt_operator.controller.act import act, create_export, keep_tensorboard
from im2txt_operator.controller.cache import Entry
from im2txt_operator.decisions import CreateJob, Decision, DeleteJob, Problem
from im2txt_operator.pods import Owner
from im2txt_operator.spec import parse_spec

OWNER = Owner(name="coco", namespace="ml", uid="uid-coco")


def writes(ctx: Any, kind: str) -> float:
    line = f'im2txt_api_writes_total{{kind="{kind}"}} '
    found = [t for t in generate_latest(ctx.metrics.registry).decode().splitlines() if t.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_a_stage_job_is_created_remembered_and_counted() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry = Entry()
    assert await act(ctx, entry, OWNER, parse_spec(SPEC), Decision({}, (CreateJob(1),))) is False
    assert kube.writes() == [("create_job", "ml", "coco-stage1")]
    assert entry.is_own(entry.jobs["stage1"])  # its watch event brings nothing new
    assert entry.jobs["stage1"]["metadata"]["ownerReferences"][0]["uid"] == "uid-coco"
    assert writes(ctx, "job") == 1


async def test_a_multi_node_stage_gets_its_headless_service_first() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    await act(ctx, Entry(), OWNER, parse_spec({**SPEC, "numNodes": 2}), Decision({}, (CreateJob(2),)))
    assert [c[:2] for c in kube.writes()] == [("create_or_patch", "services"), ("create_job", "ml")]
    assert writes(ctx, "service") == 1 and writes(ctx, "job") == 1


async def test_an_existing_job_of_this_training_is_adopted_and_one_of_another_is_reported() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    settings = parse_spec(SPEC)
    await act(ctx, Entry(), OWNER, settings, Decision({}, (CreateJob(1),)))
    entry = Entry()  # a restart: the cache has not seen the Job
    assert await act(ctx, entry, OWNER, settings, Decision({}, (CreateJob(1),))) is True
    assert entry.jobs["stage1"]["metadata"]["name"] == "coco-stage1" and writes(ctx, "job") == 1
    other = Owner(name="coco", namespace="ml", uid="uid-of-a-newer-coco")
    problem = await act(ctx, Entry(), other, settings, Decision({}, (CreateJob(1),)))
    assert isinstance(problem, Problem) and (problem.field, problem.reason) == ("metadata.name", "JobNotOwned")


async def test_a_refused_job_is_a_spec_problem() -> None:
    kube = FakeKube()
    kube.refuse = "spec.template.spec.containers[0].image: Required value"
    ctx, _ = context(kube)
    problem = await act(ctx, Entry(), OWNER, parse_spec(SPEC), Decision({}, (CreateJob(1),)))
    assert isinstance(problem, Problem) and (problem.field, problem.reason) == ("spec.image", "JobRejected")
    assert writes(ctx, "job") == 0


async def test_suspending_deletes_that_stage_job_only() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry = Entry()
    await act(ctx, entry, OWNER, parse_spec(SPEC), Decision({}, (CreateJob(1),)))
    uid = entry.jobs["stage1"]["metadata"]["uid"]
    assert await act(ctx, entry, OWNER, parse_spec(SPEC), Decision({}, (DeleteJob(1, "another-uid"),))) is False
    assert "deletionTimestamp" not in kube.jobs["ml", "coco-stage1"]["metadata"]  # not the Job it was decided on
    assert await act(ctx, entry, OWNER, parse_spec(SPEC), Decision({}, (DeleteJob(1, uid),))) is False
    assert kube.writes()[-1] == ("delete_job", "ml", "coco-stage1")
    assert kube.jobs["ml", "coco-stage1"]["metadata"]["deletionTimestamp"]
    assert writes(ctx, "job") == 3


async def test_the_export_job_is_created_once_and_never_taken_from_another_owner() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry = Entry()
    assert await create_export(ctx, entry, OWNER, parse_spec(SPEC), 299) is True
    assert kube.writes() == [("create_job", "ml", "coco-export")] and "export" in entry.jobs
    assert await create_export(ctx, Entry(), OWNER, parse_spec(SPEC), 299) is True  # 409, ours: adopted
    other = Owner(name="coco", namespace="ml", uid="another")
    assert await create_export(ctx, Entry(), other, parse_spec(SPEC), 299) is False
    assert writes(ctx, "job") == 1


async def test_tensorboard_is_written_once_per_generation_and_deleted_when_disabled() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry, on = Entry(), parse_spec({**SPEC, "tensorboard": {"enabled": True}})
    url = await keep_tensorboard(ctx, entry, OWNER, on, 1, {})
    assert url == "http://coco-tensorboard.ml.svc:6006"
    assert kube.writes() == [("create_or_patch", "deployments", "coco-tensorboard"),
                             ("create_or_patch", "services", "coco-tensorboard")]
    assert await keep_tensorboard(ctx, entry, OWNER, on, 1, {"tensorboard": url}) == url and len(kube.writes()) == 2
    await keep_tensorboard(ctx, entry, OWNER, on, 2, {"tensorboard": url})  # a new generation: written again
    assert len(kube.writes()) == 4 and entry.tensorboard == 2
    off = parse_spec(SPEC)
    assert await keep_tensorboard(ctx, entry, OWNER, off, 3, {"tensorboard": url}) is None
    assert kube.writes()[-2:] == [("delete_if_present", "deployments", "coco-tensorboard"),
                                  ("delete_if_present", "services", "coco-tensorboard")]
    assert entry.tensorboard is None and writes(ctx, "tensorboard") == 6
    assert await keep_tensorboard(ctx, entry, OWNER, off, 3, {}) is None and len(kube.writes()) == 6
