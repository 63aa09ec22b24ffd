"""What the operator process answers before it acts: a standby's health endpoint, and the wait for a Kubernetes
version it supports (cli.run calls both before kopf starts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit


async def serve_standby_health(endpoint: str | None,
                                health: Callable[[], tuple[bool, str]]) -> asyncio.Server | None:
    """A standby's answer to the probes (kopf's own endpoint starts only with the operator): 200 while it can read
    the Lease, so that it could take over; 503 with the reason while it cannot (the API does not answer)."""
    if not endpoint:
        return None
    url = urlsplit(endpoint)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            ok, why = health()
            body = (why + "\n").encode()
            status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, url.hostname, url.port)


async def until_supported(liveness: str | None, retry_seconds: float = 30.0) -> None:
    """Return once the API server runs a Kubernetes version the operator supports. Until then nothing is watched
    or written, the health endpoint answers 503 with the reason (the Pod is not Ready), and the log says it once.
    An API that does not answer is left to what comes next (a standby's wait for the Lease, kopf's retries), which
    report it; the version is read again there only through this check, at the next start."""
    from im2txt_operator import server_version
    from im2txt_operator.kube import Kube

    log = logging.getLogger("im2txt_operator")
    kube = Kube()
    why: str | None = None
    server = None
    try:
        while True:
            try:
                info = await kube.server_version()
            except Exception as e:
                log.warning("cannot read the API server's version (%s); going on without the check", e)
                return
            why = server_version.refusal(info)
            if why is None:
                log.info("Kubernetes %s (supported: %s)", info.get("gitVersion"), server_version.SUPPORTED)
                if server_version.untested(info):
                    log.warning("Kubernetes %s is newer than the newest minor this release was tested on (%s)",
                                info.get("gitVersion"), server_version.SUPPORTED)
                return
            if server is None:
                log.error("not starting: %s", why)
                server = await serve_standby_health(liveness, lambda said=why: (False, f"not starting: {said}"))
            await asyncio.sleep(retry_seconds)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        await kube.close()
