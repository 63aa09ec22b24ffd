"""startup: the standby's health answer, and the wait for a supported Kubernetes before anything is watched. The
API server's /version comes from a stand-in Kube (the operator process behind a proxy that fakes /version:
tests/cluster/test_cluster_version.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from harness import free_port

from im2txt_operator import kube as kube_module
from im2txt_operator.startup import serve_standby_health, until_supported

OLD = {"major": "1", "minor": "28", "gitVersion": "v1.28.15"}
SUPPORTED = {"major": "1", "minor": "29+", "gitVersion": "v1.29.3-eks-1234"}
NEWER = {"major": "1", "minor": "40", "gitVersion": "v1.40.0"}


async def _get(port: int, request: bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") -> tuple[bytes, bytes]:
    """(the status line and headers, the body) of one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


async def test_no_endpoint_serves_nothing() -> None:
    assert await serve_standby_health(None, lambda: (True, "")) is None
    assert await serve_standby_health("", lambda: (True, "")) is None


async def test_the_standby_answers_200_while_it_could_take_over_and_503_with_the_reason_when_not() -> None:
    port = free_port()
    said = [(True, "standby: Lease default/im2txt-operator is held by 'op-0'")]
    server = await serve_standby_health(f"http://127.0.0.1:{port}/healthz", lambda: said[-1])
    assert server is not None
    try:
        head, body = await _get(port)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"standby: Lease default/im2txt-operator is " \
                                                                   b"held by 'op-0'\n"
        assert f"Content-Length: {len(body)}".encode() in head and b"Connection: close" in head
        said.append((False, "cannot read the Lease default/im2txt-operator: Connection refused"))  # asked each time
        head, body = await _get(port)
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert body == b"cannot read the Lease default/im2txt-operator: Connection refused\n"
        # A client that hangs up before its request ends does not stop the next answer.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hea")
        writer.close()
        head, _ = await _get(port)
        assert head.startswith(b"HTTP/1.1 503")
    finally:
        server.close()
        await server.wait_closed()


class _Versions:
    """A stand-in for Kube: /version answers ``answers`` in turn (the last one again), or raises ``error``."""

    def __init__(self, *answers: dict[str, str], error: Exception | None = None) -> None:
        self.answers, self.error, self.asked, self.closed = list(answers), error, 0, False
        self.asking: Callable[[int], Awaitable[None]] | None = None  # awaited before the answer to the n-th ask

    def __call__(self) -> _Versions:
        return self

    async def server_version(self) -> dict[str, Any]:
        self.asked += 1
        if self.asking is not None:
            await self.asking(self.asked)
        if self.error is not None:
            raise self.error
        return self.answers[min(self.asked, len(self.answers)) - 1]

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def versions(monkeypatch: pytest.MonkeyPatch) -> Callable[..., _Versions]:
    def install(*answers: dict[str, str], error: Exception | None = None) -> _Versions:
        fake = _Versions(*answers, error=error)
        monkeypatch.setattr(kube_module, "Kube", fake)
        return fake

    return install


@pytest.mark.parametrize("answer, line", [
    (SUPPORTED, "Kubernetes v1.29.3-eks-1234 (supported: 1.29 to 1.36)"),
    (NEWER, "Kubernetes v1.40.0 is newer than the newest minor this release was tested on (1.29 to 1.36)"),
])
async def test_a_supported_server_goes_on_at_once(versions: Callable[..., _Versions], answer: dict[str, str],
                                                  line: str, caplog: pytest.LogCaptureFixture) -> None:
    fake = versions(answer)
    with caplog.at_level(logging.INFO, logger="im2txt_operator"):
        await asyncio.wait_for(until_supported(None, retry_seconds=60), 5)
    assert fake.asked == 1 and fake.closed and line in caplog.text
    assert "not starting" not in caplog.text


async def test_an_api_that_does_not_answer_is_left_to_what_comes_next(
        versions: Callable[..., _Versions], caplog: pytest.LogCaptureFixture) -> None:
    fake = versions(error=OSError("Connection refused"))
    with caplog.at_level(logging.INFO, logger="im2txt_operator"):
        await asyncio.wait_for(until_supported(None, retry_seconds=60), 5)
    assert fake.asked == 1 and fake.closed
    assert "cannot read the API server's version (Connection refused); going on without the check" in caplog.text


async def test_an_old_server_is_waited_out_with_one_line_and_a_503_naming_it(
        versions: Callable[..., _Versions], caplog: pytest.LogCaptureFixture) -> None:
    fake = versions(OLD, OLD, OLD, SUPPORTED)
    fourth, upgraded = asyncio.Event(), asyncio.Event()

    async def asking(n: int) -> None:
        if n == 4:  # three refusals behind it; the upgrade is answered once the test has looked
            fourth.set()
            await upgraded.wait()

    fake.asking = asking
    port = free_port()
    with caplog.at_level(logging.INFO, logger="im2txt_operator"):
        waiting = asyncio.create_task(until_supported(f"http://127.0.0.1:{port}/healthz", retry_seconds=0.01))
        await asyncio.wait_for(fourth.wait(), 5)
        head, body = await _get(port)  # served while it waits
        upgraded.set()
        assert head.startswith(b"HTTP/1.1 503")
        assert body.startswith(b"not starting: Kubernetes v1.28.15 is older than 1.29, the oldest this operator "
                               b"supports (supported: 1.29 to 1.36)")
        await asyncio.wait_for(waiting, 5)
    assert fake.asked == 4 and fake.closed
    assert caplog.text.count("not starting: Kubernetes v1.28.15") == 1  # said once, not every retry
    with pytest.raises(OSError):  # the endpoint is closed: kopf's own health endpoint takes the port
        await _get(port)
