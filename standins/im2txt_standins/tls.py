"""TLS for the UFile stand-in and the test proxies: a CA made at run time, and a CONNECT tunnel that ends in TLS.

Clients reach the stand-in as a forward proxy. For an `https://` URL, `requests` sends `CONNECT host:443` to the
proxy and then speaks TLS inside the tunnel, checking the certificate against the host name. So the proxy answers
the CONNECT, then acts as that host: it presents a certificate for the name, issued on the spot by a CA that exists
only for this process. Clients trust that CA through a bundle file (`REQUESTS_CA_BUNDLE`), never by turning
verification off.
"""

from __future__ import annotations

import shutil
import socketserver
import ssl
import tempfile
import threading
from pathlib import Path

import trustme

HANDSHAKE_TIMEOUT = 30.0  # seconds a tunnel may take to start TLS; the stand-in's sockets otherwise block


class StandInCA:
    """A throw-away certificate authority: one server context per host name, and its certificate as a file."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="im2txt UFile stand-in (test CA)")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._bundle: Path | None = None

    @property
    def cert_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def bundle(self) -> Path:
        """The CA certificate as a PEM file (what REQUESTS_CA_BUNDLE names); written once, removed by close()."""
        with self._lock:
            if self._bundle is None:
                folder = Path(tempfile.mkdtemp(prefix="ufile-standin-ca-"))
                self._bundle = folder / "ca.pem"
                self._bundle.write_bytes(self.cert_pem)
            return self._bundle

    def close(self) -> None:
        with self._lock:
            if self._bundle is not None:
                shutil.rmtree(self._bundle.parent, ignore_errors=True)
                self._bundle = None

    def server_context(self, host: str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                self._ca.issue_cert(host).configure_cert(ctx)
                self._contexts[host] = ctx
            return ctx


def connect_host(target: str) -> str:
    """`bucket.example.com:443` -> `bucket.example.com` (the name the certificate must carry)."""
    host, _, _port = target.rpartition(":")
    return (host or target).strip("[]")


def start_tls(handler: socketserver.StreamRequestHandler, ca: StandInCA, host: str) -> ssl.SSLSocket:
    """Answer a CONNECT and turn the handler's connection into the server side of a TLS connection for `host`:
    what the handler reads and writes from then on is the tunnel's plaintext."""
    handler.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    handler.wfile.flush()
    raw = handler.connection
    raw.settimeout(HANDSHAKE_TIMEOUT)
    tls = ca.server_context(host).wrap_socket(raw, server_side=True)
    tls.settimeout(None)
    handler.connection = handler.request = tls
    handler.rfile = tls.makefile("rb", handler.rbufsize)
    handler.wfile = socketserver._SocketWriter(tls)  # what StreamRequestHandler uses for wbufsize 0
    return tls
