"""A safe wrapper around the `ufile` SDK (3.2.x).

What the SDK does and what this module does about it:
- it returns `(ret, ResponseInfo)` instead of raising -> every call goes through `_raise_for`, which turns a
  failed response into a `StorageError` subclass whose message names the operation and the object;
- it logs full request headers, Authorization included, at INFO on its `UCLOUD` logger (with its own stderr
  handler) -> `guard_sdk` removes that handler and forwards SDK records, redacted, at DEBUG only;
- it crashes (AttributeError) on `X-UCloud-*` request headers -> this wrapper never passes caller headers;
- `download_file` has no timeout and its session pool holds 10 connections -> `guard_sdk` mounts an adapter
  on the SDK's session that applies (connect, read) timeouts to every request and sizes the pool;
- network errors in a streamed download escape as `requests` exceptions -> converted to `TransientError`;
- `init_multipart_upload` is broken (`resp.ok` without call) and there is no abort -> multipart goes
  through `uploadfile`, and a failed upload is aborted with a signed DELETE `?uploadId=`.
Retries (with exponential backoff and jitter) cover HTTP 5xx/408/429, timeouts, resets and failed
verification; 4xx answers (bad keys, missing objects) fail at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import logging
import os
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from ufile import config as sdk_config
from ufile import httprequest as sdk_http
from ufile.filemanager import FileManager
from ufile.multipartuploadufile import MultipartUploadUFile
from ufile.util import file_etag, mimetype_from_file, ufile_put_url

from .paths import UFileURL

log = logging.getLogger("im2txt_storage")
T = TypeVar("T")

DEFAULT_SUFFIX = ".cn-bj.ufileos.com"
ENV_PUBLIC = "UFILE_PUBLIC_KEY"
ENV_PRIVATE = "UFILE_PRIVATE_KEY"
ENV_UPLOAD_SUFFIX = "UFILE_UPLOAD_SUFFIX"
ENV_DOWNLOAD_SUFFIX = "UFILE_DOWNLOAD_SUFFIX"


# -- errors ------------------------------------------------------------------------------------------
class StorageError(Exception):
    """A UFile operation failed; the message names the operation and the object, never a secret."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.status = status


class TransientError(StorageError):
    """Worth retrying: HTTP 5xx/408/429, timeouts, resets, truncated bodies."""

    retryable = True


class IntegrityError(TransientError):
    """A transfer finished but size or ETag do not match (retried from scratch)."""


class DeadlineError(StorageError):
    """The process-wide deadline passed before the operation succeeded (not retried)."""


class AuthError(StorageError):
    """UFile refused the key pair or its signature (HTTP 401/403)."""


class NotFoundError(StorageError):
    """The object does not exist (HTTP 404)."""


class ConfigError(ValueError):
    """Bad settings or environment (missing keys, malformed suffix)."""


class PlainHTTPRefused(StorageError):
    """A request was about to leave over plain HTTP although HTTPS is required (never retried)."""


# -- secrets and redaction ---------------------------------------------------------------------------
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_PATTERNS = [
    (re.compile(r"UCloud\s+[^\s:\"']+:[A-Za-z0-9+/=_-]*"), "UCloud <redacted>"),
    (re.compile(r"(UCloudPublicKey|Signature|Authorization)=[^&\s'\"]*"), r"\1=<redacted>"),
]


def register_secret(value: str) -> None:
    if len(value) >= 6:  # real UCloud keys are long; redacting one letter would shred every message
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Remove key values, Authorization credentials and URL signatures from `text`."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


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


# -- settings ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    public_key: str = field(repr=False)
    private_key: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        values = {}
        for name in (ENV_PUBLIC, ENV_PRIVATE):
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(
                    f"environment variable {name} is not set (the UFile API key pair comes from the "
                    "training's Secret, keys publicKey/privateKey)"
                )
            values[name] = value
        return cls(values[ENV_PUBLIC], values[ENV_PRIVATE])


def _check_suffix(value: str, name: str) -> str:
    if not re.fullmatch(r"\.[A-Za-z0-9.-]+", value):
        raise ConfigError(f"{name}={value!r} is not a UFile domain suffix; expected e.g. {DEFAULT_SUFFIX!r}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    upload_suffix: str = DEFAULT_SUFFIX
    download_suffix: str = DEFAULT_SUFFIX
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    attempts: int = 6
    backoff: float = 0.5  # first retry delay; doubles each time, with jitter
    backoff_max: float = 30.0
    multipart_threshold: int = 16 * 1024 * 1024  # files this big or bigger go multipart (4 MiB parts)
    part_threads: int = 4
    list_limit: int = 1000
    # HTTPS unless the cluster admin opted in to plain HTTP (the operator's --ufile-insecure-http passes the
    # commands --insecure-http): certificates are checked against the system's CAs or REQUESTS_CA_BUNDLE.
    https: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientSettings:
        env = os.environ if env is None else env
        up = _check_suffix(env.get(ENV_UPLOAD_SUFFIX) or DEFAULT_SUFFIX, ENV_UPLOAD_SUFFIX)
        down = _check_suffix(env.get(ENV_DOWNLOAD_SUFFIX) or DEFAULT_SUFFIX, ENV_DOWNLOAD_SUFFIX)
        return cls(upload_suffix=up, download_suffix=down, **overrides)


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str


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


class UFileClient:
    """Exceptions instead of (ret, info), retries, timeouts, verification and atomic local writes."""

    def __init__(self, credentials: Credentials, settings: ClientSettings | None = None, *, pool_size: int = 16):
        self.settings = settings or ClientSettings()
        register_secret(credentials.public_key)
        register_secret(credentials.private_key)
        self._creds = credentials
        s = self.settings
        guard_sdk((s.connect_timeout, s.read_timeout), max(pool_size * 2, pool_size + s.part_threads, 10),
                  https=s.https)
        self._fm = FileManager(credentials.public_key, credentials.private_key, s.upload_suffix, s.download_suffix)
        self.sleep: Callable[[float], None] = time.sleep
        # Set: stop retrying (the periodic rounds of `sync` once SIGTERM came; the final round takes over).
        self.abandon: threading.Event | None = None

    # -- retry ---------------------------------------------------------------------------------------
    def _retry(self, what: str, attempt: Callable[[], T], attempts: int | None = None) -> T:
        s = self.settings
        attempts = attempts or s.attempts
        reason = ""
        for n in range(1, attempts + 1):
            left = deadline_left()
            if left is not None and left <= 0:
                raise DeadlineError(f"{what}: deadline reached" + (f"; last error: {reason}" if reason else ""))
            try:
                return attempt()
            except StorageError as exc:
                if not exc.retryable or n == attempts:
                    raise
                reason = str(exc)
            except _NETWORK_ERRORS as exc:
                if n == attempts:
                    raise TransientError(
                        f"{what}: network error after {n} attempts: {describe_network_error(exc)}") from None
                reason = f"{what}: network error: {describe_network_error(exc)}"
            if self.abandon is not None and self.abandon.is_set():
                raise TransientError(f"{reason} (not retried: stopping)")
            delay = min(s.backoff * 2 ** (n - 1), s.backoff_max) * random.uniform(0.5, 1.0)
            left = deadline_left()
            if left is not None:
                delay = max(min(delay, left), 0.0)
            log.info("retrying in %.2fs (attempt %d of %d): %s", delay, n + 1, attempts, redact(reason))
            if self.abandon is not None:
                self.abandon.wait(delay)
            else:
                self.sleep(delay)
        raise AssertionError("unreachable")

    # -- listing -------------------------------------------------------------------------------------
    def list(self, url: UFileURL) -> list[RemoteObject]:
        """Every object under the URL's prefix, following NextMarker across pages."""
        found: dict[str, RemoteObject] = {}
        marker = ""
        while True:
            what = f"list {url} (marker {marker!r})"

            def page(marker: str = marker, what: str = what) -> dict[str, Any]:
                ret, info = self._fm.getfilelist(url.bucket, prefix=url.prefix, marker=marker,
                                                 limit=self.settings.list_limit)
                _raise_for(info, what)
                if not isinstance(ret, dict) or not isinstance(ret.get("DataSet"), list):
                    raise TransientError(f"{what}: UFile answered without a DataSet")
                return ret

            ret = self._retry(what, page)
            for item in ret["DataSet"]:
                key = str(item["FileName"])
                found[key] = RemoteObject(key, int(item["Size"]), str(item.get("Hash", "")).strip('"'))
            next_marker = str(ret.get("NextMarker") or "")
            if not next_marker or not ret["DataSet"]:
                return [found[k] for k in sorted(found)]
            if next_marker <= marker:
                raise StorageError(f"{what}: NextMarker {next_marker!r} does not advance")
            marker = next_marker

    def head(self, bucket: str, key: str) -> RemoteObject | None:
        what = f"head ufile://{bucket}/{key}"

        def attempt() -> RemoteObject | None:
            _, info = self._fm.head_file(bucket, key)
            if info.status_code == 404:
                return None
            _raise_for(info, what)
            return RemoteObject(key, int(info.content_length or 0), (info.etag or "").strip('"'))

        return self._retry(what, attempt)

    # -- download ------------------------------------------------------------------------------------
    def download(self, bucket: str, obj: RemoteObject, dest: Path, *, part_name: str | None = None) -> None:
        """Download to `.<name>.im2txt-part` beside `dest`, resume with Range after a cut, verify size and
        ETag, then rename into place: `dest` is either absent, the old file, or the complete new one.
        `part_name` names the temporary file instead (same folder, so the rename stays atomic): `mirror` uses
        one without "tfevents" in it, which TensorBoard would read as an event file."""
        if part_name is not None and (not part_name or "/" in part_name or part_name in (".", "..")):
            raise ValueError(f"part_name must be a plain file name, got {part_name!r}")
        what = f"download ufile://{bucket}/{obj.key} -> {dest}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(part_name or f".{dest.name}.im2txt-part")

        def attempt() -> None:
            have = part.stat().st_size if part.exists() else 0
            if have > obj.size:
                part.unlink()
                have = 0
            if have == 0:
                _last_answer.value = None
                try:
                    _, info = self._fm.download_file(bucket, obj.key, str(part))
                except BaseException:
                    answer = last_answer()
                    if answer is None or answer[0] != 200:  # what is there is not the object's beginning
                        part.unlink(missing_ok=True)
                    raise
                _raise_for(info, what)
            elif have < obj.size:
                self._download_rest(bucket, obj, part, have, what)
            size = part.stat().st_size
            if size != obj.size:  # kept: the next attempt asks for the rest with a Range request
                raise TransientError(f"{what}: got {size} of {obj.size} bytes")
            etag = file_etag(str(part))
            if etag != obj.etag:
                part.unlink()
                raise IntegrityError(f"{what}: the downloaded bytes' ETag {etag} does not match UFile's "
                                     f"{obj.etag} (corrupted in transit, or the object changed)")
            os.replace(part, dest)

        try:
            self._retry(what, attempt)
        except BaseException:
            # A kept partial file only helps a retry within this call; don't leave it behind.
            part.unlink(missing_ok=True)
            raise

    def _download_rest(self, bucket: str, obj: RemoteObject, part: Path, have: int, what: str) -> None:
        """Ask for bytes `have..end`; whatever arrives is kept, also from an answer cut off midway."""
        rest = part.with_name(part.name + ".range")
        _last_answer.value = None
        try:
            _, info = self._fm.download_file(bucket, obj.key, str(rest), content_range=(have, obj.size - 1))
            _raise_for(info, what)
            answer: tuple[int, str | None] | None = (info.status_code, f"bytes {have}-")
            if info.status_code == 206 and info.content_range != (have, obj.size - 1):
                answer = None  # not the range we asked for: drop it
        except BaseException:
            answer = last_answer()
            raise
        finally:
            _keep_received(part, rest, have, answer)

    # -- upload --------------------------------------------------------------------------------------
    def upload(self, bucket: str, key: str, src: Path) -> RemoteObject:
        """Upload a file (multipart when big), verify UFile's ETag against the local one."""
        what = f"upload {src} -> ufile://{bucket}/{key}"

        def attempt() -> RemoteObject:
            size = src.stat().st_size
            if size >= self.settings.multipart_threshold:
                etag = file_etag(str(src))
                remote = self._multipart(bucket, key, src, what)
                if not remote:
                    raise TransientError(f"{what}: UFile's reply carried no ETag (its headers were cut off); "
                                         "uploading again")
                if remote != etag:
                    raise IntegrityError(f"{what}: UFile stored ETag {remote}, the local file has {etag}")
                return RemoteObject(key, size, etag)
            # Small files are read once: what is hashed is exactly what is sent, even if the file grows.
            data = src.read_bytes()
            return self._put_bytes(bucket, key, data, mimetype_from_file(str(src)), what)

        return self._retry(what, attempt)

    def upload_bytes(self, bucket: str, key: str, data: bytes, mime: str = "text/plain") -> RemoteObject:
        what = f"upload {len(data)} bytes -> ufile://{bucket}/{key}"
        return self._retry(what, lambda: self._put_bytes(bucket, key, data, mime, what))

    def _put_bytes(self, bucket: str, key: str, data: bytes, mime: str, what: str) -> RemoteObject:
        _, info = self._fm.putstream(bucket, key, io.BytesIO(data), mime_type=mime)
        _raise_for(info, what)
        etag = _bytes_etag(data)
        remote = (info.etag or "").strip('"')
        if not remote:
            raise TransientError(f"{what}: UFile's reply carried no ETag (its headers were cut off); uploading again")
        if remote != etag:
            raise IntegrityError(f"{what}: UFile stored ETag {remote!r}, the data has {etag}")
        return RemoteObject(key, len(data), etag)

    def _multipart(self, bucket: str, key: str, src: Path, what: str) -> str:
        s = self.settings
        up = MultipartUploadUFile(self._creds.public_key, self._creds.private_key, s.upload_suffix)
        try:
            _, info = up.uploadfile(bucket, key, str(src), maxthread=s.part_threads, retrycount=3,
                                    retryinterval=s.backoff)
        except BaseException:
            self._abort(bucket, key, up.uploadid)
            raise
        if not info.ok():
            self._abort(bucket, key, up.uploadid)
        _raise_for(info, what)
        return (info.etag or "").strip('"')

    def _abort(self, bucket: str, key: str, upload_id: str | None) -> None:
        """Drop a failed multipart upload's parts (UFile would keep them otherwise): retried like any request,
        and a failure is logged (never raised: the upload's own error is the one to report)."""
        if not upload_id:
            return
        what = f"abort multipart upload {upload_id} of ufile://{bucket}/{key}"
        url = ufile_put_url(bucket, key, upload_suffix=self.settings.upload_suffix) + f"?uploadId={upload_id}"

        def attempt() -> None:
            header = {"User-Agent": sdk_config.get_default("user_agent")}
            header["Authorization"] = self._fm.authorization("delete", bucket, key, header)
            _, info = sdk_http._delete_file(url, header)
            if info.status_code != 404:  # already gone
                _raise_for(info, what)

        try:
            self._retry(what, attempt)
        except StorageError as exc:
            log.warning("%s failed; its parts stay in the bucket until UFile expires them: %s", what, exc)

    def delete(self, bucket: str, key: str, *, attempts: int | None = None) -> None:
        what = f"delete ufile://{bucket}/{key}"

        def attempt() -> None:
            _, info = self._fm.deletefile(bucket, key)
            if info.status_code != 404:
                _raise_for(info, what)

        self._retry(what, attempt, attempts)


def _keep_received(part: Path, rest: Path, have: int, answer: tuple[int, str | None] | None) -> None:
    """Fold a (possibly cut) ranged answer into the partial download: a 206 from `have` is appended, a 200
    (the server ignored the range: the object from byte 0) replaces it if it got further."""
    try:
        if not rest.exists() or answer is None:
            return
        status, content_range = answer
        if status == 206 and (content_range or "").startswith(f"bytes {have}-"):
            with part.open("ab") as out, rest.open("rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        elif status == 200 and rest.stat().st_size > have:
            os.replace(rest, part)
    finally:
        rest.unlink(missing_ok=True)


def _bytes_etag(data: bytes) -> str:
    """UFile's ETag of in-memory data: the SDK's `file_etag` algorithm (4 MiB blocks), for bytes."""
    block = sdk_config.BLOCKSIZE
    digests = [hashlib.sha1(data[i : i + block]).digest() for i in range(0, len(data), block)]
    digest = hashlib.sha1(b"".join(digests)).digest() if len(digests) > 1 else b"".join(digests)
    return base64.urlsafe_b64encode(struct.pack("<I", len(digests)) + digest).decode()
