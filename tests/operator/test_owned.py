"""controller.owned: only this training's objects are patched, adopted or deleted; anybody else's raises NotOwned
and stays as it is. On an in-memory Kube that records every call (the real API server's answers:
tests/cluster/test_cluster_children.py and test_cluster_network.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fake_kube import FakeKube

from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller.owned import NotOwned, controlled_by, controlled_by_a_training, ensure, remove

UID = "uid-coco"


def _ref(**over: Any) -> dict[str, Any]:
    return {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "name": "coco", "uid": UID,
            "controller": True, "blockOwnerDeletion": True} | over


def _service(refs: list[dict[str, Any]] | None = None, port: int = 6006) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "coco-tensorboard", "namespace": "ml",
                            "labels": {"im2txt.dev/training": "coco", "im2txt.dev/role": "tensorboard"}}
    if refs is not None:
        meta["ownerReferences"] = refs
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [{"port": port}]}}


def _stored(kube: FakeKube, body: dict[str, Any], plural: str = "services", uid: str = "uid-old") -> dict[str, Any]:
    """``body`` as the server holds it already (made by an earlier operator, or by a tenant)."""
    obj = copy.deepcopy(body)
    obj["metadata"]["uid"] = uid
    obj.pop("kind")  # an object read back from its URL carries no kind in the fake: ensure sets it
    if plural == "jobs":
        kube.jobs[obj["metadata"]["namespace"], obj["metadata"]["name"]] = obj
    else:
        kube.objects[plural, obj["metadata"]["namespace"], obj["metadata"]["name"]] = obj
    return obj


def test_controlled_by_is_the_controller_reference_of_this_training_only() -> None:
    assert controlled_by(_service([_ref()]), UID)
    assert controlled_by(_service([_ref(controller=False, uid="x"), _ref()]), UID)  # any one of them
    for refs in ([], [_ref(uid="uid-of-an-earlier-coco")], [_ref(controller=False)], [_ref(controller=None)],
                 [_ref(kind="Deployment")]):
        assert not controlled_by(_service(refs), UID), refs
    assert not controlled_by(_service(), UID) and not controlled_by({}, UID)


def test_controlled_by_a_training_is_one_named_as_the_label_says() -> None:
    assert controlled_by_a_training(_service([_ref(uid="any")]))
    other = _service([_ref(name="other")])
    assert not controlled_by_a_training(other)  # the label says coco, the controller is another training
    unlabelled = _service([_ref()])
    unlabelled["metadata"]["labels"] = {}
    assert not controlled_by_a_training(unlabelled)
    assert not controlled_by_a_training(_service([_ref(controller=False)]))
    assert not controlled_by_a_training(_service([_ref(kind="ReplicaSet")]))


async def test_a_new_child_is_created_once() -> None:
    kube = FakeKube()
    obj, created = await ensure(kube, _service([_ref()]), UID)
    assert created and obj["metadata"]["uid"] == "uid-coco-tensorboard"
    assert kube.calls == [("create", "services", "coco-tensorboard")]


async def test_an_existing_child_of_this_training_is_patched_on_its_uid() -> None:
    kube = FakeKube()
    _stored(kube, _service([_ref()], port=1))
    patches: list[dict[str, Any]] = []
    merge_patch = kube.merge_patch

    async def recording(api: str, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        patches.append(copy.deepcopy(patch))
        return await merge_patch(api, plural, namespace, name, patch)

    kube.merge_patch = recording  # type: ignore[method-assign]
    obj, created = await ensure(kube, _service([_ref()]), UID)
    assert not created and obj["spec"] == {"ports": [{"port": 6006}]}
    # The uid it read rides along: an object made again in between (another uid) is refused by the server.
    assert patches == [{"metadata": {"uid": "uid-old", "labels": {"im2txt.dev/training": "coco",
                                                                  "im2txt.dev/role": "tensorboard"}},
                        "spec": {"ports": [{"port": 6006}]}}]
    assert [c[0] for c in kube.calls] == ["create", "read", "merge_patch"]


async def test_without_update_and_for_a_job_the_existing_child_is_taken_as_it_is() -> None:
    kube = FakeKube()
    _stored(kube, _service([_ref()], port=1))
    obj, created = await ensure(kube, _service([_ref()]), UID, update=False)
    assert not created and obj["kind"] == "Service" and obj["spec"]["ports"] == [{"port": 1}]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "coco-stage1", "namespace": "ml",
                                                                  "ownerReferences": [_ref()]},
           "spec": {"suspend": False, "parallelism": 1}}
    _stored(kube, {**job, "spec": {"suspend": True, "parallelism": 1}}, "jobs")  # Kueue suspended it
    obj, created = await ensure(kube, job, UID)  # update=True, but a Job is never patched
    assert not created and obj["kind"] == "Job" and obj["spec"]["suspend"] is True
    assert "merge_patch" not in [c[0] for c in kube.calls]


@pytest.mark.parametrize("refs", [None, [_ref(uid="uid-of-an-earlier-coco")], [_ref(controller=False)]])
async def test_anybody_elses_object_raises_not_owned_and_is_left_alone(refs: list[dict[str, Any]] | None) -> None:
    kube = FakeKube()
    theirs = _stored(kube, _service(refs, port=443), uid="theirs")
    with pytest.raises(NotOwned) as e:
        await ensure(kube, _service([_ref()]), UID)
    assert str(e.value) == "Service ml/coco-tensorboard is not this training's"
    assert e.value.obj["metadata"]["uid"] == "theirs" and e.value.obj["kind"] == "Service"
    assert kube.objects["services", "ml", "coco-tensorboard"] == theirs
    assert [c[0] for c in kube.calls] == ["create", "read"]  # refused with 409, read, nothing written


async def test_api_errors_come_through_as_they_are() -> None:
    kube = FakeKube()

    async def forbidden(api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        raise ApiException(403, "Forbidden", 'services is forbidden: cannot create resource "services"')

    kube.create = forbidden  # type: ignore[method-assign]
    with pytest.raises(ApiException) as e:
        await ensure(kube, _service([_ref()]), UID)
    assert e.value.status == 403 and kube.calls == []


async def test_a_child_deleted_between_the_create_and_the_read_is_a_conflict_to_retry() -> None:
    kube = FakeKube()
    _stored(kube, _service([_ref()]))
    read = kube.read

    async def gone(api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        del kube.objects[plural, namespace, name]
        return await read(api, plural, namespace, name)

    kube.read = gone  # type: ignore[method-assign]
    with pytest.raises(ApiException) as e:
        await ensure(kube, _service([_ref()]), UID)
    assert e.value.status == 409 and "coco-tensorboard was deleted while it was being made" in e.value.message


async def test_remove_deletes_this_trainings_child_by_its_uid_only() -> None:
    kube = FakeKube()
    assert await remove(kube, "Service", "ml", "coco-tensorboard", UID) is False  # none: nothing to delete
    assert kube.calls == [("read", "services", "coco-tensorboard")]
    _stored(kube, _service([_ref()]), uid="uid-ours")
    assert await remove(kube, "Service", "ml", "coco-tensorboard", UID) is True
    assert ("services", "ml", "coco-tensorboard") not in kube.objects
    theirs = _stored(kube, _service(None), uid="theirs")
    with pytest.raises(NotOwned):
        await remove(kube, "Service", "ml", "coco-tensorboard", UID)
    assert kube.objects["services", "ml", "coco-tensorboard"] == theirs
    assert [c[0] for c in kube.calls] == ["read", "read", "delete", "read"]


@pytest.mark.parametrize("kind", ["Job", "NetworkPolicy"])
async def test_remove_never_deletes_a_job_or_a_network_policy(kind: str) -> None:
    kube = FakeKube()
    with pytest.raises(ValueError, match=f"never deletes a {kind}"):
        await remove(kube, kind, "ml", "coco-stage1", UID)
    assert kube.calls == []
