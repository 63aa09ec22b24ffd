"""controller/job_watch.py: list, watch from the list's version, resume where a watch ended, list again on 410 and
hand over what vanished meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller import job_watch
from im2txt_operator.controller.job_watch import JobIndex

KEY = ("ml", "coco")


def job(stage: int, rv: int, uid: str | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": f"coco-stage{stage}", "uid": uid or f"j{stage}",
                         "resourceVersion": str(rv),
                         "labels": {"im2txt.dev/training": "coco", "im2txt.dev/stage": str(stage)},
                         "ownerReferences": [{"kind": "Im2txtTraining", "name": "coco", "uid": "t",
                                              "controller": True}]}}


class Server:
    """The Jobs' list and watch as the API server answers them: pages, a watch's events, a 410."""

    def __init__(self) -> None:
        self.pages: list[dict[str, Any]] = []
        self.watches: list[list[dict[str, Any]] | ApiException] = []  # what each watch request gets, in turn
        self.asked: list[tuple[str, Any]] = []

    async def list_jobs(self, namespace: str | None, selector: str, page: str | None = None,
                        limit: int = 500) -> dict[str, Any]:
        self.asked.append(("list", page))
        return self.pages[int(page or 0)]

    async def watch_jobs(self, namespace: str | None, selector: str, resource_version: str,
                         timeout_s: int) -> AsyncIterator[dict[str, Any]]:
        self.asked.append(("watch", resource_version))
        if not self.watches:
            await asyncio.sleep(3600)
        answer = self.watches.pop(0)
        if isinstance(answer, ApiException):
            raise answer
        for event in answer:
            yield event


def listed(version: str, *items: dict[str, Any], more: str | None = None) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version, **({"continue": more} if more else {})}, "items": list(items)}


async def test_sync_reads_every_page_and_hands_over_what_changed() -> None:
    server, index, seen = Server(), JobIndex(), []
    server.pages = [listed("10", job(1, 4), more="1"), listed("", job(2, 9))]
    version = await job_watch.sync(server, "ml", index, lambda kind, j: seen.append((kind, j["metadata"]["name"])))
    assert version == "10" and server.asked == [("list", None), ("list", "1")]
    assert seen == [("ADDED", "coco-stage1"), ("ADDED", "coco-stage2")]
    assert {j["metadata"]["name"] for j in index.get(KEY)} == {"coco-stage1", "coco-stage2"}
    assert all(j["kind"] == "Job" for j in index.get(KEY))  # a list's items carry no kind: the index's do
    # Listed again (after a 410): stage 1 is gone, stage 2 unchanged, a new stage 1 under a new uid.
    seen.clear()
    server.asked.clear()
    server.pages = [listed("20", job(2, 9), job(1, 15, uid="j1-new"))]
    assert await job_watch.sync(server, "ml", index, lambda kind, j: seen.append((kind, j["metadata"]["uid"]))) == "20"
    assert seen == [("DELETED", "j1"), ("ADDED", "j1-new")]
    assert {j["metadata"]["uid"] for j in index.get(KEY)} == {"j2", "j1-new"}


async def test_follow_resumes_from_the_last_version_and_lists_again_on_410() -> None:
    server, index, seen = Server(), JobIndex(), []
    index.put(job(1, 4))
    modified = job(1, 12)
    modified["status"] = {"active": 1}
    server.watches = [
        [{"type": "MODIFIED", "object": modified},
         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "14"}}}],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}],
    ]
    server.pages = [listed("30", job(2, 25))]  # stage 1 was deleted while the watch could not say so
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    task = asyncio.create_task(job_watch.follow(server, "ml", index, lambda kind, j: seen.append(
        (kind, j["metadata"]["name"])), "10", sleep=sleep))
    for _ in range(100):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.asked == [("watch", "10"), ("watch", "14"), ("list", None), ("watch", "30")]
    assert seen == [("MODIFIED", "coco-stage1"), ("DELETED", "coco-stage1"), ("ADDED", "coco-stage2")]
    assert [j["metadata"]["name"] for j in index.get(KEY)] == ["coco-stage2"] and sleeps == []


async def test_a_failed_watch_is_tried_again_with_backoff_from_the_same_version() -> None:
    server, index = Server(), JobIndex()
    server.watches = [ApiException(500, "InternalError", "etcd"), ApiException(500, "InternalError", "etcd"),
                      ApiException(410, "Gone", "too old")]
    server.pages = [listed("40")]
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    task = asyncio.create_task(job_watch.follow(server, None, index, lambda kind, j: None, "10", sleep=sleep))
    for _ in range(100):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.asked == [("watch", "10"), ("watch", "10"), ("watch", "10"), ("list", None), ("watch", "40")]
    assert sleeps == [1, 2]


async def test_the_first_list_is_tried_until_it_succeeds_with_the_same_backoff() -> None:
    class Refusing(Server):
        def __init__(self, refusals: int) -> None:
            super().__init__()
            self.refusals = refusals

        async def list_jobs(self, namespace: str | None, selector: str, page: str | None = None,
                            limit: int = 500) -> dict[str, Any]:
            if self.refusals:
                self.refusals -= 1
                raise ApiException(503, "ServiceUnavailable", "the API server starts")
            return await super().list_jobs(namespace, selector, page, limit)

    server, index, seen = Refusing(6), JobIndex(), []
    server.pages = [listed("7", job(1, 4))]
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    version = await job_watch.first_sync(server, "ml", index, lambda kind, j: seen.append(kind), sleep=sleep)
    assert version == "7" and seen == ["ADDED"] and len(index) == 1
    assert sleeps == [1, 2, 5, 10, 30, 30]  # the last delay repeats
