"""kube: the operator's API client against a recording HTTP server: what it sends, and how it reads refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from im2txt_operator import kube as kube_module
from im2txt_operator.api_errors import ApiException, Fenced
from im2txt_operator.kube import FIELD_MANAGER, Kube


class Recorder:
    """An HTTP server that records each request and answers what the test queued (200 {} by default)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answers: list[tuple[int, Any]] = []
        self.retry_after: str | None = None  # sent with every 429

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.seen.append({"method": request.method, "path": request.raw_path.split("?")[0],
                          "query": dict(request.query), "headers": dict(request.headers),
                          "body": json.loads(body) if body else None})
        status, payload = self.answers.pop(0) if self.answers else (200, {})
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after is not None else {}
        if isinstance(payload, str):
            return web.Response(status=status, text=payload, headers=headers)
        return web.json_response(payload, status=status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield recorder, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _kube(host: str, fence: Any = None) -> Kube:
    config = kubernetes.client.Configuration()
    config.host = host
    config.api_key = {"authorization": "token-123"}
    config.api_key_prefix = {"authorization": "Bearer"}
    return Kube(config, fence=fence)


async def test_writes_carry_the_field_manager_and_reads_do_not(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    kube = _kube(host)
    try:
        await kube.create_lease("ml", {"metadata": {"name": "im2txt-operator"}})
        await kube.merge_patch("/apis/batch/v1", "jobs", "ml", "coco-stage1", {"spec": {"completions": 2}})
        await kube.patch_training_status("ml", "coco", {"phase": "Running"})
        await kube.get_training("ml", "coco")
    finally:
        await kube.close()
    assert [(s["method"], s["query"].get("fieldManager")) for s in recorder.seen] == [
        ("POST", FIELD_MANAGER), ("PATCH", FIELD_MANAGER), ("PATCH", FIELD_MANAGER), ("GET", None)]
    assert recorder.seen[1]["headers"]["Content-Type"] == "application/merge-patch+json"
    assert all(s["headers"]["Authorization"] == "Bearer token-123" for s in recorder.seen)


async def test_a_name_cannot_leave_its_path(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    kube = _kube(host)
    try:
        await kube.get_training("ml", "../../../api/v1/secrets")
    finally:
        await kube.close()
    assert recorder.seen[0]["path"] == \
        "/apis/im2txt.dev/v1alpha1/namespaces/ml/im2txttrainings/..%2F..%2F..%2Fapi%2Fv1%2Fsecrets"


async def test_a_refusal_keeps_the_servers_reason_message_and_causes(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    causes = [{"field": "spec.template.spec.containers[0].image", "message": "Required value"}]
    recorder.answers.append((422, {"kind": "Status", "reason": "Invalid", "message": "Job is invalid",
                                   "details": {"causes": causes}}))
    recorder.answers.append((502, "<html>bad gateway</html>"))
    kube = _kube(host)
    try:
        with pytest.raises(ApiException) as invalid:
            await kube.merge_patch("/apis/batch/v1", "jobs", "ml", "x", {"spec": {}})
        with pytest.raises(ApiException) as proxy:
            await kube.get_training("ml", "x")
    finally:
        await kube.close()
    assert (invalid.value.status, invalid.value.reason, invalid.value.message) == (422, "Invalid", "Job is invalid")
    assert invalid.value.details["causes"] == causes
    assert proxy.value.status == 502 and "bad gateway" in proxy.value.message


async def test_a_leader_without_time_left_sends_no_write_but_still_reads(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    kube = _kube(host, fence=lambda: 0.0)
    try:
        with pytest.raises(Fenced):
            await kube.patch_training_status("ml", "coco", {"phase": "Running"})
        await kube.get_training("ml", "coco")
    finally:
        await kube.close()
    assert [s["method"] for s in recorder.seen] == ["GET"]


async def test_a_log_is_text_read_with_its_container_and_tail(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    recorder.answers.append((200, "global step 5: loss = 2.0\n"))
    kube = _kube(host)
    try:
        text = await kube.read_log("ml", "coco-stage1-abc", "trainer", 20)
    finally:
        await kube.close()
    assert text == "global step 5: loss = 2.0\n"
    assert recorder.seen[0]["query"] == {"container": "trainer", "tailLines": "20"}


async def test_pod_lists_are_served_from_the_servers_cache_as_fresh_as_asked(server: tuple[Recorder, str]) -> None:
    """Not consistent reads from etcd (every pod of the namespace decoded to be filtered): any cached version, at
    least a given one, or (None) a consistent read where nothing older may be trusted."""
    recorder, host = server
    recorder.answers.extend([(200, {"items": []})] * 3)
    kube = _kube(host)
    try:
        await kube.list_pods("ml", "coco-stage1")
        await kube.list_pods("ml", "coco-stage1", "812")
        await kube.list_pods("ml", "coco-stage1", None)
    finally:
        await kube.close()
    assert [s["query"] for s in recorder.seen] == [
        {"labelSelector": "job-name=coco-stage1", "resourceVersion": "0", "resourceVersionMatch": "NotOlderThan"},
        {"labelSelector": "job-name=coco-stage1", "resourceVersion": "812", "resourceVersionMatch": "NotOlderThan"},
        {"labelSelector": "job-name=coco-stage1"}]


async def test_a_429_is_sent_again_after_its_retry_after(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    too_many = {"kind": "Status", "reason": "TooManyRequests", "message": "too many requests"}
    recorder.answers += [(429, too_many), (429, too_many), (200, {"metadata": {"name": "coco"}})]
    recorder.retry_after = "0"
    kube = _kube(host)
    try:
        answer = await kube.patch_training_status("ml", "coco", {"phase": "Running"})
    finally:
        await kube.close()
    assert answer == {"metadata": {"name": "coco"}} and len(recorder.seen) == 3


async def test_a_429_without_retry_after_or_past_the_fence_is_an_error(server: tuple[Recorder, str]) -> None:
    recorder, host = server
    too_many = {"kind": "Status", "reason": "TooManyRequests", "message": "too many requests"}
    recorder.answers += [(429, too_many)]
    kube = _kube(host)
    try:
        with pytest.raises(ApiException) as plain:
            await kube.get_training("ml", "coco")
        recorder.retry_after = "5"
        recorder.answers += [(429, too_many)]
        fenced = _kube(host, fence=lambda: 2.0)  # 2 s left on the Lease: waiting 5 s would outlive it
        try:
            with pytest.raises(ApiException) as late:
                await fenced.patch_training_status("ml", "coco", {"phase": "Running"})
        finally:
            await fenced.close()
    finally:
        await kube.close()
    assert plain.value.status == 429 and late.value.status == 429 and len(recorder.seen) == 2


async def test_the_rate_limit_spaces_requests(server: tuple[Recorder, str]) -> None:
    import time

    from im2txt_operator.api_budget import TokenBucket

    recorder, host = server
    kube = _kube(host)
    kube.limit = TokenBucket(rate=50.0, burst=1)
    start = time.monotonic()
    try:
        for _ in range(6):
            await kube.get_training("ml", "coco")
    finally:
        await kube.close()
    assert time.monotonic() - start >= 5 / 50.0 * 0.9 and len(recorder.seen) == 6


async def test_writes_to_children_and_status_name_the_version_they_were_decided_on(
        server: tuple[Recorder, str]) -> None:
    recorder, host = server
    recorder.answers += [(200, {}), (404, {"kind": "Status", "reason": "NotFound", "message": "gone"})]
    kube = _kube(host)
    try:
        assert await kube.delete("/api/v1", "services", "ml", "coco-tensorboard", "uid-1") is True
        assert await kube.delete("/api/v1", "services", "ml", "coco-tensorboard", "uid-1") is False
        await kube.patch_training_status("ml", "coco", {"phase": "Running"}, "41")
    finally:
        await kube.close()
    assert recorder.seen[0]["method"] == "DELETE"
    assert recorder.seen[0]["path"] == "/api/v1/namespaces/ml/services/coco-tensorboard"
    assert recorder.seen[0]["body"] == {"propagationPolicy": "Background", "preconditions": {"uid": "uid-1"}}
    assert recorder.seen[2]["body"] == {"status": {"phase": "Running"}, "metadata": {"resourceVersion": "41"}}


async def test_the_token_is_refreshed_every_ttl_and_after_a_401(server: tuple[Recorder, str]) -> None:
    """The configuration's refresh hook (a rotated service-account token) runs at most every AUTH_TTL seconds, not
    per request, and at once after the server answered 401."""
    recorder, host = server
    kube = _kube(host)
    tokens = iter(["one", "two", "three"])
    refreshed: list[str] = []

    def refresh(config: kubernetes.client.Configuration) -> None:
        refreshed.append(next(tokens))
        config.api_key = {"authorization": refreshed[-1]}

    kube.config.refresh_api_key_hook = refresh
    clock = [1000.0]
    kube.clock = lambda: clock[0]
    recorder.answers += [(200, {}), (200, {}), (200, {}), (401, {"kind": "Status", "reason": "Unauthorized"}),
                         (200, {})]
    try:
        await kube.get_training("ml", "a")
        clock[0] += kube_module.AUTH_TTL / 2
        await kube.get_training("ml", "a")  # within the TTL: the same header, no refresh
        clock[0] += kube_module.AUTH_TTL
        await kube.get_training("ml", "a")  # past it: asked again
        with pytest.raises(ApiException):
            await kube.get_training("ml", "a")  # 401: the header is dropped...
        await kube.get_training("ml", "a")  # ...and asked again at once
    finally:
        await kube.close()
    assert refreshed == ["one", "two", "three"]
    assert [r["headers"]["Authorization"] for r in recorder.seen] == [
        "Bearer one", "Bearer one", "Bearer two", "Bearer two", "Bearer three"]
