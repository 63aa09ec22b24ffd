"""The HTTP layer under the `ufile` SDK: its logger silenced and redacted, timeouts (shrunk to the process-wide
deadline) and a pool on its `requests` session, HTTPS unless the admin opted out, failed answers turned into errors
that name the real fault."""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from ufile import config as sdk_config
from ufile import httprequest as sdk_http

from .errors import AuthError, NotFoundError, PlainHTTPRefused, StorageError, TransientError, redact
from .settings import ENV_PRIVATE, ENV_PUBLIC


class _ForwardRedacted(logging.Handler):
    """Re-emits the SDK's records, redacted, at DEBUG on `im2txt_storage.sdk`."""

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger("im2txt_storage.sdk")
        if target.isEnabledFor(logging.DEBUG):
            with contextlib.suppress(Exception):  # never let a log line break a transfer
                target.debug("%s", redact(record.getMessage()))


class _RedactFilter(logging.Filter):
    """Rewrites a record in place without secrets (urllib3 logs signed URLs, public key included, at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(Exception):
            record.msg, record.args = redact(record.getMessage()), None
        return True


_REDACTED_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.response", "requests")

# After SIGTERM, `sync` sets one deadline for the whole process (monotonic seconds): every request started from
# then on gets timeouts no longer than what is left, so no single request can outlive the final upload's budget.
_deadline: list[float | None] = [None]
# The status and Content-Range of the last answer this thread received: a download cut mid-body escapes the
# SDK as an exception, and what was already written is only worth keeping if it is the range we asked for.
_last_answer = threading.local()


def set_deadline(at: float | None) -> None:
    _deadline[0] = at


def deadline_left() -> float | None:
    """Seconds left before the process-wide deadline (None: no deadline)."""
    at = _deadline[0]
    return None if at is None else at - time.monotonic()


def _remember_answer(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    _last_answer.value = (response.status_code, response.headers.get("Content-Range"))


def last_answer() -> tuple[int, str | None] | None:
    return getattr(_last_answer, "value", None)


def forget_answer() -> None:
    """Before a download: what the last answer was must come from this request, not an earlier one."""
    _last_answer.value = None


_SOCKET_OPTIONS = [*urllib3.connection.HTTPConnection.default_socket_options,
                   (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default (connect, read) timeout to requests that pass none (the SDK's download does)."""

    def __init__(self, timeout: tuple[float, float], pool_size: int, *, https: bool = True) -> None:
        self._timeout = timeout
        self._https = https
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("socket_options", _SOCKET_OPTIONS)
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        # requests builds proxy pools without urllib3's default TCP_NODELAY: a PUT's body then waits for the
        # ACK of its headers (Nagle + delayed ACK, ~40 ms per request).
        kwargs.setdefault("socket_options", _SOCKET_OPTIONS)
        return super().proxy_manager_for(proxy, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self._https and not str(request.url).startswith("https://"):
            # The last line of defence: signed requests (their signatures can be replayed) and the data never
            # leave in plain text unless the admin opted in (--insecure-http), whatever URL the SDK built.
            raise PlainHTTPRefused(f"refusing to send a UFile request over plain HTTP ({str(request.url)[:7]}...); "
                                   "HTTPS is required unless the cluster admin allows plain HTTP (--insecure-http)")
        if self._https and kwargs.get("verify") is False:
            raise PlainHTTPRefused("refusing an HTTPS request without certificate verification")
        timeout = kwargs.get("timeout") or self._timeout
        left = deadline_left()
        if left is not None and isinstance(timeout, tuple):
            timeout = tuple(max(min(t, left), 0.05) for t in timeout)
        kwargs["timeout"] = timeout
        return super().send(request, **kwargs)


def guard_sdk(timeout: tuple[float, float], pool_size: int, *, https: bool = True) -> None:
    """Silence and redact the SDK's logger; put timeouts and a big enough pool on its HTTP session; choose https
    (the SDK's `open_ssl`, which every `set_default` call resets: so it is set here, last). The SDK's settings and
    session are process-wide: one process speaks one scheme, the one its last client asked for."""
    sdk_logger = logging.getLogger("UCLOUD")
    for handler in list(sdk_logger.handlers):
        sdk_logger.removeHandler(handler)
    sdk_logger.addHandler(_ForwardRedacted())
    sdk_logger.propagate = False
    debug = logging.getLogger("im2txt_storage.sdk").isEnabledFor(logging.DEBUG)
    sdk_logger.setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    for name in _REDACTED_LOGGERS:
        other = logging.getLogger(name)
        if not any(isinstance(f, _RedactFilter) for f in other.filters):
            other.addFilter(_RedactFilter())
    for scheme in ("http://", "https://"):
        sdk_http.requests.mount(scheme, _TimeoutAdapter(timeout, pool_size, https=https))
    hooks = sdk_http.requests.hooks.setdefault("response", [])
    if _remember_answer not in hooks:
        hooks.append(_remember_answer)
    sdk_config.set_default(connection_timeout=None, open_ssl=https)



TLS_FAILED = ("TLS failed: UFile's certificate could not be verified (the endpoint's CA must be among the "
              "system's or in REQUESTS_CA_BUNDLE)")
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


def describe_network_error(exc: BaseException | None) -> str:
    """Name the real fault: requests reports every failure on a proxied connection as "Unable to connect to
    proxy", also a reset or a stall of a connection that was made long ago."""
    seen: list[BaseException] = []
    todo = [exc] if exc is not None else []
    while todo and len(seen) < 20:
        cur = todo.pop(0)
        if cur in seen:
            continue
        seen.append(cur)
        todo += [a for a in (*getattr(cur, "args", ()), cur.__cause__, cur.__context__,
                             getattr(cur, "reason", None)) if isinstance(a, BaseException)]
    kinds = [type(e) for e in seen]
    if any(issubclass(k, (requests.exceptions.SSLError, ssl.SSLError)) for k in kinds):
        return TLS_FAILED
    if any(issubclass(k, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout))
           for k in kinds):
        return "no answer in time (timed out)"
    if ConnectionResetError in kinds or any(issubclass(k, ConnectionResetError) for k in kinds):
        return "connection reset by peer"
    if any(issubclass(k, http.client.RemoteDisconnected) for k in kinds):
        return "the connection was closed without an answer"
    if any(issubclass(k, (http.client.IncompleteRead, urllib3.exceptions.ProtocolError,
                          requests.exceptions.ChunkedEncodingError)) for k in kinds):
        return "the answer was cut off"
    if any(issubclass(k, ConnectionRefusedError) for k in kinds):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown network error"


def _raise_for(info: sdk_http.ResponseInfo, what: str) -> None:
    """Turn a failed `ResponseInfo` into the matching StorageError."""
    if info.ok():
        return
    status = info.status_code
    if status == -1 and describe_network_error(info.exception) == TLS_FAILED:
        raise StorageError(f"{what}: {TLS_FAILED}")  # retrying cannot help: the certificate will not change
    if status == -1:
        raise TransientError(f"{what}: network error: {describe_network_error(info.exception)}")
    detail = f"HTTP {status}"
    if info.ret_code not in (None, -1):
        detail += f", RetCode {info.ret_code}: {info.error}"
    if status in (401, 403):
        raise AuthError(
            f"{what}: UFile refused the request ({detail}); check that {ENV_PUBLIC}/{ENV_PRIVATE} are a "
            "valid key pair with access to this bucket",
            status=status,
        )
    if status == 404:
        raise NotFoundError(f"{what}: not found ({detail})", status=status)
    if status >= 500 or status in (408, 429):
        raise TransientError(f"{what}: UFile answered {detail}", status=status)
    raise StorageError(f"{what}: UFile answered {detail}", status=status)

