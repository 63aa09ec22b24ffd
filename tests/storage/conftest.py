"""Fixtures: a UFile stand-in over real HTTPS (CONNECT, a CA made per test), reached by the real SDK through
HTTPS_PROXY and trusted through REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from storage_helpers import FAST

from im2txt_standins.ufile_server import UFileServer
from im2txt_storage.client import Credentials, UFileClient


@pytest.fixture
def creds() -> Credentials:
    # Distinctive values, so a leak anywhere is found by a plain substring search.
    return Credentials("PUBKEY" + secrets.token_hex(12), "PRIVKEY" + secrets.token_hex(16))


@pytest.fixture
def server(creds: Credentials, monkeypatch: pytest.MonkeyPatch) -> Iterator[UFileServer]:
    with UFileServer({creds.public_key: creds.private_key}) as srv:
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name, value in srv.client_env().items():
            monkeypatch.setenv(name, value)
        yield srv


@pytest.fixture
def client(server: UFileServer, creds: Credentials) -> UFileClient:
    return UFileClient(creds, FAST, pool_size=8)
