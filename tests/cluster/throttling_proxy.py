"""A proxy in front of the real kube-apiserver that answers some requests 429 Too Many Requests with a Retry-After,
as API Priority and Fairness does when a priority level is full (or another Status, e.g. etcd's 500), and forwards
everything else (watches streamed).

The operator talks to it over plain HTTP on loopback; it talks to the API server over TLS with the caller's own
Authorization header, so RBAC is the real server's. Every request is logged with its time and answer.
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
TOO_MANY: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                            "reason": "TooManyRequests",
                            "message": "too many requests, please try again later (the priority level is full)"}


@dataclass
class Seen:
    at: float
    method: str
    path: str
    status: int
    name: str = ""  # a POST's metadata.name


@dataclass
class ThrottlingProxy:
    """``throttle(method, path, name, seen)`` says whether to answer ``refusal`` (``name``: a POST's metadata.name;
    ``seen``: what came before); a 429 comes with a Retry-After."""

    upstream: str
    ca: Path
    throttle: Callable[[str, str, str, list[Seen]], bool]
    retry_after: str = "1"
    refusal: dict[str, Any] = field(default_factory=lambda: TOO_MANY)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThrottlingProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)), name="throttling-proxy",
                                        daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"
        return self

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
        if self.throttle(request.method, path, name, list(self.seen)):
            code = int(self.refusal["code"])
            self.seen.append(Seen(time.monotonic(), request.method, path, code, name))
            return web.json_response(self.refusal, status=code,
                                     headers={"Retry-After": self.retry_after} if code == 429 else None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(request.method, self.upstream + request.rel_url.raw_path_qs, data=body or None,
                                   headers=headers) as upstream:
            self.seen.append(Seen(time.monotonic(), request.method, path, upstream.status, name))
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():  # watches: event by event
                await response.write(chunk)
            await response.write_eof()
            return response
