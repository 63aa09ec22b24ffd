"""A fault-injecting HTTP forward proxy on loopback, between the real `ufile` SDK (via HTTPS_PROXY) and the UFile
stand-in: what a flaky network and an overloaded service do to requests, per request and reproducibly.

The SDK speaks HTTPS through a CONNECT tunnel; given the stand-in's CA, the proxy ends the tunnel in TLS as that
host (like the stand-in itself), so the faults hit the requests inside real TLS connections, and forwards each
request to the stand-in over loopback. Plain proxy-style requests (the admin's plain-HTTP opt-in) work too.

Faults (chosen per request with probability `rate`, kind uniformly from `kinds`, from a seeded RNG):
- "status": answers HTTP 500 or 503 with UFile's error JSON, without forwarding;
- "reset": a TCP RST instead of an answer, without forwarding;
- "stall": holds the request, unanswered, for `stall` seconds (longer than the client's timeout), then closes;
- "drop": forwards the request (it is carried out) and closes without answering: the answer is lost;
- "cut": forwards, then sends the answer's headers and half of its body (or half of its headers when the body is
  empty, as for a PUT) and closes;
- "corrupt": forwards, flips one byte in the middle of a GET's body;
- "outage": resets every request for the next `outage` seconds.
`rules` add deterministic faults (`Rule(kind, method, key glob, count, cut_at)`); `blackhole` accepts connections
and never answers (a service that hangs); `trickle` answers one byte of a status line every 0.2 s, forever (no
read timeout ever fires). Every stall ends when the proxy stops: it is bounded in time.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import json
import random
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from im2txt_standins.tls import StandInCA, connect_host, start_tls

KINDS = ("status", "reset", "stall", "drop", "cut", "corrupt", "outage")
_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te", "upgrade"}


@dataclass
class Rule:
    kind: str
    method: str = "*"
    key: str = "*"
    count: int = -1  # < 0: forever
    cut_at: int | None = None  # "cut": bytes of the body sent before the cut (default: half)

    def take(self, method: str, key: str) -> bool:
        if self.count == 0 or not fnmatch.fnmatchcase(method, self.method) or not fnmatch.fnmatchcase(key, self.key):
            return False
        self.count -= 1 if self.count > 0 else 0
        return True


@dataclass
class Seen:
    method: str
    key: str
    range: str | None
    fault: str | None
    sent: int  # body bytes sent back
    tls: bool = False  # inside a CONNECT tunnel, over TLS


class FaultProxy:
    def __init__(self, upstream: str, *, rate: float = 0.0, kinds: tuple[str, ...] = KINDS, seed: int = 0,
                 stall: float = 3.0, outage: float = 1.0, ca: StandInCA | None = None) -> None:
        up = urlsplit(upstream)
        self.ca = ca
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.rate, self.kinds, self.stall, self.outage = rate, kinds, stall, outage
        self.rules: list[Rule] = []
        self.blackhole = False
        self.trickle = False
        self.seen: list[Seen] = []
        self.faults: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._outage_until = 0.0
        self._stopping = threading.Event()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._serve(self)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def env(self) -> dict[str, str]:
        """The proxy variables that send a client through this proxy, for both schemes."""
        return {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url}

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    # -- one client connection ---------------------------------------------------------------------------
    def _serve(self, h: socketserver.StreamRequestHandler) -> None:
        h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream: http.client.HTTPConnection | None = None
        tls = False
        try:
            while not self._stopping.is_set():
                request = _read_request(h.rfile)
                if request is None:
                    return
                method, target, headers, body = request
                if method == "CONNECT" and self.ca is not None and not tls:
                    start_tls(h, self.ca, connect_host(target))
                    tls = True
                    continue
                key = unquote(urlsplit(target).path.lstrip("/"))
                if self.blackhole:
                    self._note(method, key, headers, "blackhole", 0, tls)
                    self._stopping.wait(600)
                    return
                if self.trickle:
                    self._note(method, key, headers, "trickle", 0, tls)
                    while not self._stopping.wait(0.2):
                        h.wfile.write(b"H")
                        h.wfile.flush()
                    return
                kind, rule = self._choose(method, key)
                if kind in ("reset", "outage"):
                    self._note(method, key, headers, kind, 0, tls)
                    _reset(h.connection)
                    return
                if kind == "stall":
                    self._note(method, key, headers, kind, 0, tls)
                    self._stopping.wait(self.stall)
                    return
                if kind == "status":
                    status = self._rng.choice((500, 503))
                    err = json.dumps({"RetCode": -1, "ErrMsg": "injected by the fault proxy"}).encode()
                    h.wfile.write(_head(status, [("Content-Type", "application/json"),
                                                 ("Content-Length", str(len(err)))]) + err)
                    self._note(method, key, headers, kind, len(err), tls)
                    continue
                if upstream is None:
                    upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
                upstream.request(method, target, body=body,
                                 headers={k: v for k, v in headers if k.lower() not in _HOP | {"content-length"}})
                resp = upstream.getresponse()
                data = resp.read() if method != "HEAD" else b""
                out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
                if method != "HEAD" and not any(k.lower() == "content-length" for k, _ in out_headers):
                    out_headers.append(("Content-Length", str(len(data))))
                if kind == "drop":
                    self._note(method, key, headers, kind, 0, tls)
                    return
                if kind == "corrupt" and method == "GET" and data:
                    i = len(data) // 2
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                head = _head(resp.status, out_headers)
                cut = rule.cut_at if rule is not None and rule.cut_at is not None else len(data) // 2
                if kind == "cut" and (len(data) < 2 or cut < len(data)):  # (a body up to `cut_at` goes through)
                    if len(data) >= 2:
                        h.wfile.write(head + data[:cut])
                        self._note(method, key, headers, kind, cut, tls)
                    else:
                        h.wfile.write(head[: len(head) // 2])
                        self._note(method, key, headers, kind, 0, tls)
                    h.wfile.flush()
                    with contextlib.suppress(OSError):
                        h.connection.shutdown(socket.SHUT_RDWR)
                    return
                h.wfile.write(head + data)
                self._note(method, key, headers, kind if kind != "cut" else None, len(data), tls)
        except (OSError, http.client.HTTPException):
            return
        finally:
            if upstream is not None:
                upstream.close()

    def _choose(self, method: str, key: str) -> tuple[str | None, Rule | None]:
        with self._lock:
            for rule in self.rules:
                if rule.take(method, key):
                    return rule.kind, rule
            if time.monotonic() < self._outage_until:
                return "outage", None
            if self._rng.random() >= self.rate:
                return None, None
            kind = self._rng.choice(self.kinds)
            if kind == "outage":
                self._outage_until = time.monotonic() + self.outage
            return kind, None

    def _note(self, method: str, key: str, headers: list[tuple[str, str]], fault: str | None, sent: int,
              tls: bool) -> None:
        rng = next((v for k, v in headers if k.lower() == "range"), None)
        with self._lock:
            self.seen.append(Seen(method, key, rng, fault, sent, tls))
            if fault:
                self.faults[fault] += 1


def _read_request(rfile: object) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    line = rfile.readline(65537)  # type: ignore[attr-defined]
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    while (raw := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):  # type: ignore[attr-defined]
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    lower = {k.lower(): v for k, v in headers}
    if "chunked" in lower.get("transfer-encoding", "").lower():
        chunks = []
        while (size := int(rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:  # type: ignore[attr-defined]
            chunks.append(rfile.read(size))  # type: ignore[attr-defined]
            rfile.readline()  # type: ignore[attr-defined]
        rfile.readline()  # type: ignore[attr-defined]
        body = b"".join(chunks)
    else:
        body = rfile.read(int(lower.get("content-length") or 0))  # type: ignore[attr-defined]
    return method, target, headers, body


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    reason = http.client.responses.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
