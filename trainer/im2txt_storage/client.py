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
Retries (exponential backoff, jitter) cover HTTP 5xx/408/429, timeouts, resets and failed verification; 4xx
answers (bad keys, missing objects) fail at once. Errors, settings and the HTTP layer are in their own modules.
"""

from __future__ import annotations

import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ufile import config as sdk_config
from ufile import httprequest as sdk_http
from ufile.filemanager import FileManager
from ufile.multipartuploadufile import MultipartUploadUFile
from ufile.util import file_etag, mimetype_from_file, ufile_put_url

from .errors import (
    AuthError,
    ConfigError,
    DeadlineError,
    IntegrityError,
    NotFoundError,
    PlainHTTPRefused,
    StorageError,
    TransientError,
    redact,
    register_secret,
)
from .local import bytes_etag, keep_received
from .paths import UFileURL
from .settings import ClientSettings, Credentials, RemoteObject
from .transport import (
    _NETWORK_ERRORS,
    _raise_for,
    deadline_left,
    describe_network_error,
    forget_answer,
    guard_sdk,
    last_answer,
    set_deadline,
)

__all__ = ["AuthError", "ClientSettings", "ConfigError", "Credentials", "DeadlineError", "IntegrityError",
           "NotFoundError", "PlainHTTPRefused", "RemoteObject", "StorageError", "TransientError", "UFileClient",
           "deadline_left", "describe_network_error", "redact", "register_secret", "set_deadline"]
log = logging.getLogger("im2txt_storage")
T = TypeVar("T")


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
                forget_answer()
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
        forget_answer()
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
            keep_received(part, rest, have, answer)

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
        etag = bytes_etag(data)
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

