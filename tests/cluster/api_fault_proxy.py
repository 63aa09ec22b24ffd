"""A proxy in front of the real kube-apiserver that injects the faults a test chooses, and forwards everything else
(watches streamed):

- a refusal: some requests answered 429 Too Many Requests with a Retry-After, as API Priority and Fairness does when
  a priority level is full (or another Status, e.g. etcd's 500);
- a delay: requests whose path contains a given part wait before they are forwarded, from whenever the test adds
  the delay until it removes it;
- a version: /version answered with a chosen body (a Kubernetes the test has no server of).

The operator talks to it over plain HTTP on loopback; it talks to the API server over TLS with the caller's own
Authorization header, so RBAC is the real server's. Every request is logged as it is forwarded (or refused), with
the status the server (or the proxy) answered: what a test counts as the writes the server received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOO_MANY: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                            "reason": "TooManyRequests",
                            "message": "too many requests, please try again later (the priority level is full)"}


@dataclass
class Seen:
    at: float  # when it was forwarded (or refused)
    method: str
    path: str
    status: int = 0  # the answer's; 0 until it comes
    name: str = ""  # a POST's metadata.name


@dataclass
class Delay:
    """Requests whose path contains ``part`` wait ``seconds`` before they are forwarded; ``held`` lists each one as it
    arrives (a test acts while one is held)."""

    part: str
    seconds: float
    held: list[Seen] = field(default_factory=list)


def never(method: str, path: str, name: str, seen: list[Seen]) -> bool:
    return False


@dataclass
class ApiFaultProxy:
    """``throttle(method, path, name, seen)`` says whether to answer ``refusal`` (``name``: a POST's metadata.name;
    ``seen``: what came before); a 429 comes with a Retry-After. ``delays`` and ``version`` may be changed while
    it runs."""

    upstream: str
    ca: Path
    throttle: Callable[[str, str, str, list[Seen]], bool] = never
    retry_after: str = "1"
    refusal: dict[str, Any] = field(default_factory=lambda: TOO_MANY)
    delays: list[Delay] = field(default_factory=list)
    version: dict[str, str] | None = None  # /version's body; None: the server's
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def writes(self, since: float = 0.0) -> list[Seen]:
        """The writes forwarded (or refused) at or after ``since`` (time.monotonic())."""
        return [s for s in list(self.seen) if s.method in WRITES and s.at >= since]

    def start(self) -> ApiFaultProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)), name="api-fault-proxy",
                                        daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"
        return self

    def __enter__(self) -> ApiFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        context = ssl.create_default_context(cafile=str(self.ca))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", lambda request: self._forward(session, request))
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.StreamResponse:
        path, body = request.path, await request.read()
        name = ""
        if request.method == "POST" and body:
            with contextlib.suppress(ValueError, AttributeError):
                name = str(json.loads(body).get("metadata", {}).get("name") or "")
        for delay in list(self.delays):
            if delay.part in path:
                delay.held.append(Seen(time.monotonic(), request.method, path, 0, name))
                await asyncio.sleep(delay.seconds)
        version = self.version
        if path == "/version" and version is not None:
            self.seen.append(Seen(time.monotonic(), request.method, path, 200, name))
            return web.json_response(version)
        # Logged before it is sent: a write counts as soon as the server may have it.
        seen = Seen(time.monotonic(), request.method, path, 0, name)
        self.seen.append(seen)
        if self.throttle(request.method, path, name, self.seen[:-1]):
            seen.status = int(self.refusal["code"])
            return web.json_response(self.refusal, status=seen.status,
                                     headers={"Retry-After": self.retry_after} if seen.status == 429 else None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(request.method, self.upstream + request.rel_url.raw_path_qs, data=body or None,
                                   headers=headers) as upstream:
            seen.status = upstream.status
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():  # watches: event by event
                await response.write(chunk)
            await response.write_eof()
            return response
