"""controller.status_write: a status patch lands only on the version of the training it was decided from; a writer
that read an older one loses, reads again and writes nothing. On an in-memory Kube that answers 409 on a stale
resourceVersion as the API server does (the real server: tests/cluster/test_cluster_stale_status.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fake_kube import FakeKube, context, training
from prometheus_client import generate_latest

from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller.status_write import write_status

KEY = ("ml", "coco")
PATCH = {"phase": "Running", "stage": 1}


def _status_writes(ctx: Any) -> float:
    line = 'im2txt_api_writes_total{kind="status"} '
    found = [t for t in generate_latest(ctx.metrics.registry).decode().splitlines() if t.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def _setup(body: dict[str, Any]) -> tuple[FakeKube, Any, Any]:
    kube = FakeKube(body)
    ctx, _ = context(kube)
    entry = ctx.cache.entry(KEY)
    entry.body = body
    return kube, ctx, entry


async def test_a_write_on_the_version_read_lands_is_kept_and_counted() -> None:
    read = training(rv="1")
    kube, ctx, entry = _setup(read)
    assert await write_status(ctx, KEY, entry, read, dict(PATCH)) is True
    stored = kube.trainings[KEY]
    assert stored["status"] == PATCH and stored["metadata"]["resourceVersion"] == "100"
    assert entry.body["status"] == PATCH and entry.body["metadata"]["resourceVersion"] == "100"
    assert entry.is_own(stored)  # its watch event is ours: not reconciled again
    assert _status_writes(ctx) == 1


async def test_a_write_from_an_older_read_loses_and_the_entry_holds_what_is_there(
        caplog: pytest.LogCaptureFixture) -> None:
    stale = training(rv="1")
    kube, ctx, entry = _setup(stale)
    kube.trainings[KEY]["status"] = {"phase": "Suspended", "message": "written by the replica that leads now"}
    kube.trainings[KEY]["metadata"]["resourceVersion"] = "7"
    with caplog.at_level(logging.INFO, logger="im2txt_operator"):
        assert await write_status(ctx, KEY, entry, stale, dict(PATCH)) is False
    assert kube.trainings[KEY]["status"]["phase"] == "Suspended"  # not written over
    assert entry.body["status"]["phase"] == "Suspended" and entry.body["metadata"]["resourceVersion"] == "7"
    assert "ml/coco: status not written: the training changed since it was read (re-read)" in caplog.text
    assert _status_writes(ctx) == 0
    assert [c[0] for c in kube.calls] == ["patch_training_status", "get_training"]


async def test_a_training_made_again_under_the_name_is_not_taken_for_this_one() -> None:
    stale = training(rv="1")
    kube, ctx, entry = _setup(stale)
    kube.trainings[KEY] = training(uid="uid-of-a-newer-coco", rv="9", status={"phase": "Pending"})
    assert await write_status(ctx, KEY, entry, stale, dict(PATCH)) is False
    assert entry.body is stale  # the entry is this uid's; the new training comes with its own watch event
    assert kube.trainings[KEY]["status"] == {"phase": "Pending"}


async def test_a_deleted_training_is_nothing_to_write(caplog: pytest.LogCaptureFixture) -> None:
    read = training()
    kube, ctx, entry = _setup(read)
    del kube.trainings[KEY]

    async def not_found(namespace: str, name: str, status: dict[str, Any],
                        resource_version: str | None = None) -> dict[str, Any]:
        raise ApiException(404, "NotFound", f'im2txttrainings.im2txt.dev "{name}" not found')

    kube.patch_training_status = not_found  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="im2txt_operator"):
        assert await write_status(ctx, KEY, entry, read, dict(PATCH)) is False
    assert entry.body is read and "(gone)" in caplog.text and _status_writes(ctx) == 0


@pytest.mark.parametrize("status", [422, 403, 500])
async def test_other_errors_are_raised_for_the_queue_to_retry(status: int) -> None:
    read = training()
    kube, ctx, entry = _setup(read)

    async def refused(namespace: str, name: str, patch: dict[str, Any],
                      resource_version: str | None = None) -> dict[str, Any]:
        raise ApiException(status, "Refused", "no")

    kube.patch_training_status = refused  # type: ignore[method-assign]
    with pytest.raises(ApiException) as e:
        await write_status(ctx, KEY, entry, read, dict(PATCH))
    assert e.value.status == status and entry.body is read and _status_writes(ctx) == 0
