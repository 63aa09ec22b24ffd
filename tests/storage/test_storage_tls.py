"""HTTPS is the default for every UFile request (issue 18.5): the storage commands speak TLS and check the
certificate; plain HTTP only with --insecure-http, which only the operator writes (tests/operator).

A wire tap (a TCP relay on loopback) between the commands and the stand-in keeps every byte both ways: with
HTTPS it holds the CONNECT lines and then only TLS records, never the data, a signature or a key."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import BUCKET, FAST, storage_env, write_checkpoint
from test_storage_cli import DATA_URL, OUTPUT_URL, run
from ufile import config as sdk_config

from im2txt_standins.tls import StandInCA
from im2txt_standins.ufile_server import UFileServer
from im2txt_storage.client import Credentials, PlainHTTPRefused, UFileClient
from im2txt_storage.paths import parse_ufile_url

COCO = parse_ufile_url(f"ufile://{BUCKET}/coco/", field="url")
MARKER = b"PLAINTEXT-MARKER-" + os.urandom(8).hex().encode()


class WireTap:
    """Relays TCP connections to `upstream` and records every byte in both directions."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.wire = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="wire-tap").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                with self._lock:
                    self.wire += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def tap(server: UFileServer) -> Iterator[WireTap]:
    t = WireTap((server.host, server.port))
    yield t
    t.close()


def _seed(server: UFileServer) -> None:
    server.put_object(BUCKET, "coco/data/word_counts.txt", MARKER + b" 1\n")
    server.put_object(BUCKET, "coco/data/train-00000-of-00001", MARKER * 100)


def test_fetch_and_sync_speak_tls_and_nothing_readable_crosses_the_wire(
    server: UFileServer, creds: Credentials, tmp_path: Path, tap: WireTap
) -> None:
    _seed(server)
    env = storage_env(server, creds, HTTP_PROXY=tap.url, HTTPS_PROXY=tap.url)
    pod = tmp_path / "pod"
    r = run(["fetch", f"--data-url={DATA_URL}", f"--data-dir={pod / 'data'}", f"--output-url={OUTPUT_URL}",
             f"--output-dir={pod / 'output'}"], env)
    assert r.proc.returncode == 0, r.stderr
    assert (pod / "data" / "word_counts.txt").read_bytes() == MARKER + b" 1\n"
    write_checkpoint(pod / "output", 100)
    (pod / "output" / "notes.txt").write_bytes(MARKER)
    (pod / "done").touch()
    r = run(["sync", f"--output-url={OUTPUT_URL}", f"--output-dir={pod / 'output'}", f"--until-file={pod / 'done'}"],
            env)
    assert r.proc.returncode == 0, r.stderr
    assert server.get_object(BUCKET, "coco/output/notes.txt") == MARKER
    records = server.requests_log
    assert {rec.method for rec in records} >= {"GET", "PUT"} and all(rec.tls for rec in records)
    wire = bytes(tap.wire)
    assert f"CONNECT {BUCKET}.cn-bj.ufileos.com:443".encode() in wire
    assert b"\x16\x03" in wire  # TLS handshake records follow the CONNECT
    for clear in (MARKER, b"Authorization", b"UCloud ", creds.public_key.encode(), b"HTTP/1.1 200 OK\r\nContent"):
        assert clear not in wire, clear


def test_plain_http_only_with_the_insecure_http_flag_and_it_says_so(
    server: UFileServer, creds: Credentials, tmp_path: Path, tap: WireTap
) -> None:
    _seed(server)
    env = storage_env(server, creds, HTTP_PROXY=tap.url, HTTPS_PROXY=tap.url)
    r = run(["fetch", f"--data-url={DATA_URL}", f"--data-dir={tmp_path}", "--insecure-http"], env)
    assert r.proc.returncode == 0, r.stderr
    assert "UFile requests go over plain HTTP (--insecure-http)" in r.stderr
    assert server.requests_log and not any(rec.tls for rec in server.requests_log)
    assert MARKER in bytes(tap.wire)  # what the flag costs: the data is readable on the way
    r.assert_no_secret(creds)


def test_a_certificate_from_another_ca_fails_at_once_naming_tls(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    _seed(server)
    other = StandInCA()
    try:
        env = storage_env(server, creds, REQUESTS_CA_BUNDLE=str(other.bundle()))
        started = time.monotonic()
        r = run(["fetch", f"--data-url={DATA_URL}", f"--data-dir={tmp_path}"], env)
        took = time.monotonic() - started
    finally:
        other.close()
    assert r.proc.returncode == 1
    assert "TLS failed: UFile's certificate could not be verified" in r.stderr and "REQUESTS_CA_BUNDLE" in r.stderr
    assert server.requests_log == []  # no request reached the (untrusted) server
    assert took < 8, f"retried a certificate failure ({took:.1f}s)"  # 6 attempts with backoff take longer
    r.assert_no_secret(creds)


def test_the_transport_refuses_plain_http_even_when_the_sdk_builds_an_http_url(
    server: UFileServer, creds: Credentials
) -> None:
    """The SDK's `open_ssl` is process-wide and any `set_default(...)` call resets it to False: the client's
    transport refuses to send such a request rather than fall back to plain HTTP."""
    client = UFileClient(creds, FAST)
    server.put_object(BUCKET, "coco/x", b"x")
    assert [o.key for o in client.list(COCO)] == ["coco/x"]
    sdk_config.set_default()  # what any other user of the SDK in the process may do
    try:
        with pytest.raises(PlainHTTPRefused, match="refusing to send a UFile request over plain HTTP"):
            client.list(COCO)
    finally:
        sdk_config.set_default(open_ssl=True)
    assert len(server.requests_log) == 1  # only the first, HTTPS listing went out
