"""controller.act: the children writes on an in-memory Kube that records every call."""

from __future__ import annotations

from typing import Any

from fake_kube import SPEC, FakeKube, context
from prometheus_client import generate_latest

from im2txt_operator.api_errors import ApiException
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
    assert kube.writes() == [("create", "jobs", "coco-stage1")]
    assert entry.is_own(entry.jobs["stage1"])  # its watch event brings nothing new
    assert entry.jobs["stage1"]["metadata"]["ownerReferences"][0]["uid"] == "uid-coco"
    assert writes(ctx, "job") == 1


async def test_a_multi_node_stage_gets_its_headless_service_and_network_policy_first() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    await act(ctx, Entry(), OWNER, parse_spec({**SPEC, "numNodes": 2}), Decision({}, (CreateJob(2),)))
    assert [c[:2] for c in kube.writes()] == [("create", "services"), ("create", "networkpolicies"), ("create", "jobs")]
    assert writes(ctx, "service") == 1 and writes(ctx, "networkpolicy") == 1 and writes(ctx, "job") == 1


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
    assert await create_export(ctx, entry, OWNER, parse_spec(SPEC), 299) is None
    assert kube.writes() == [("create", "jobs", "coco-export")] and "export" in entry.jobs
    assert await create_export(ctx, Entry(), OWNER, parse_spec(SPEC), 299) is None  # 409, ours: adopted
    other = Owner(name="coco", namespace="ml", uid="another")
    problem = await create_export(ctx, Entry(), other, parse_spec(SPEC), 299)
    assert problem is not None and problem.reason == "JobNotOwned" and "Job coco-export" in problem.message
    assert writes(ctx, "job") == 1


async def test_tensorboard_is_written_once_per_generation_and_deleted_when_disabled() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    entry, on = Entry(), parse_spec({**SPEC, "tensorboard": {"enabled": True}})
    url, problem = await keep_tensorboard(ctx, entry, OWNER, on, 1, {})
    assert url == "http://coco-tensorboard.ml.svc:6006" and problem is None
    assert kube.writes() == [("create", "deployments", "coco-tensorboard"),
                             ("create", "services", "coco-tensorboard")]
    assert await keep_tensorboard(ctx, entry, OWNER, on, 1, {"tensorboard": url}) == (url, None)
    assert len(kube.writes()) == 2
    await keep_tensorboard(ctx, entry, OWNER, on, 2, {"tensorboard": url})  # a new generation: written again
    # each a 409 on create, then a patch of what is ours (by its uid)
    assert [c[0] for c in kube.writes()[2:]] == ["create", "merge_patch"] * 2 and entry.tensorboard == 2
    off = parse_spec(SPEC)
    assert await keep_tensorboard(ctx, entry, OWNER, off, 3, {"tensorboard": url}) == (None, None)
    assert kube.writes()[-2:] == [("delete", "deployments", "coco-tensorboard"),
                                  ("delete", "services", "coco-tensorboard")]
    assert entry.tensorboard is None and writes(ctx, "tensorboard") == 6
    assert await keep_tensorboard(ctx, entry, OWNER, off, 3, {}) == (None, None) and len(kube.writes()) == 8


def _foreign(kube: FakeKube, plural: str, name: str, kind: str) -> dict[str, Any]:
    """An object a tenant made with a child's name (no owner), as the fake stores it."""
    obj = {"kind": kind, "metadata": {"name": name, "namespace": "ml", "uid": f"theirs-{name}", "labels": {"a": "b"}},
           "spec": {"ports": [{"port": 443}]}}
    kube.objects[plural, "ml", name] = obj
    return obj


async def test_a_foreign_object_with_a_child_name_is_reported_and_left_untouched() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)
    theirs = _foreign(kube, "services", "coco-stage1", "Service")
    before = dict(theirs)
    problem = await act(ctx, Entry(), OWNER, parse_spec({**SPEC, "numNodes": 2}), Decision({}, (CreateJob(1),)))
    assert isinstance(problem, Problem) and problem.reason == "ServiceNotOwned"
    assert "Service coco-stage1 in namespace ml" in problem.message and "it has no controller" in problem.message
    assert kube.objects["services", "ml", "coco-stage1"] == before and not kube.jobs  # no patch, no Job
    on = parse_spec({**SPEC, "tensorboard": {"enabled": True}})
    _foreign(kube, "services", "coco-tensorboard", "Service")
    url, problem = await keep_tensorboard(ctx, Entry(), OWNER, on, 1, {})
    assert problem is not None and problem.reason == "ServiceNotOwned"
    assert [c for c in kube.writes() if c[0] != "create"] == []  # created the Deployment, patched nothing
    # Disabled: the foreign Service is not ours to delete; ours (the Deployment) is.
    entry = Entry(tensorboard=1)
    assert await keep_tensorboard(ctx, entry, OWNER, parse_spec(SPEC), 2, {"tensorboard": url}) == (None, None)
    assert ("services", "ml", "coco-tensorboard") in kube.objects
    assert ("deployments", "ml", "coco-tensorboard") not in kube.objects


async def test_a_failed_child_write_is_a_problem_with_the_servers_reason() -> None:
    kube = FakeKube()
    ctx, _ = context(kube)

    async def forbidden(api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        raise ApiException(403, "Forbidden", 'services is forbidden: User "op" cannot create resource "services"')

    kube.create = forbidden  # type: ignore[method-assign]
    problem = await act(ctx, Entry(), OWNER, parse_spec({**SPEC, "numNodes": 2}), Decision({}, (CreateJob(1),)))
    assert isinstance(problem, Problem) and (problem.field, problem.reason) == ("spec.numNodes", "ServiceForbidden")
    assert "HTTP 403 Forbidden" in problem.message and 'cannot create resource "services"' in problem.message
