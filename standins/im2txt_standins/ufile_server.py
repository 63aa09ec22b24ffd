"""A local UFile-compatible HTTP server, for tests and the demo (never for production).

The `ufile` SDK builds URLs `https://{bucket}{suffix}/{key}` (`http://` with the admin's plain-HTTP opt-in) and
honours `HTTPS_PROXY`/`HTTP_PROXY`, so this server is a forward proxy: it answers `CONNECT host:443` and serves the
tunnel in TLS with a certificate for that host from a CA made at start (`tls.py`; clients trust `ca.bundle()`),
and it accepts plain proxy-style absolute-form requests (`GET http://bucket.cn-bj.ufileos.com/key HTTP/1.1`) and
plain ones (bucket from the Host header). Each request's record says whether it came over TLS. It mirrors what
the SDK relies on:

- authorisation `Authorization: UCloud <public>:<base64 HMAC-SHA1>` over
  `METHOD\\nContent-MD5\\nContent-Type\\nDate\\n<x-ucloud-* headers><"/bucket/key">` (plus the listobjects
  parameters), query-string signatures for private downloads (`UCloudPublicKey`, `Expires`, `Signature`),
  and the form field `Authorization` for form (POST) uploads;
- prefix listing `GET /?list&prefix=&marker=&limit=` (JSON `DataSet`, `NextMarker`, empty at the end) and
  `GET /?listobjects` (S3-like, with delimiter);
- GET with `Range`, HEAD, PUT, form POST, DELETE;
- multipart upload: `POST key?uploads` -> `{UploadId, BlkSize}`, `PUT key?uploadId=&partNumber=` (from 0),
  `POST key?uploadId=` with the comma-separated part ETags, `DELETE key?uploadId=` to abort;
- UFile's ETag: base64url(uint32 LE block count + SHA1 digest) over 4 MiB blocks (SHA1 of the block SHA1s
  when there is more than one block), the same for simple and multipart objects;
- errors as JSON `{"RetCode": n, "ErrMsg": "..."}` with `Content-Type: application/json` (the SDK only parses
  that exact type). The RetCode values are this stand-in's own; clients must only rely on the HTTP status.

Faults are injected on demand through `Fault` rules (HTTP status, slow answer, connection reset, truncated
body), and `latency` adds a delay to every request (the storage benchmark uses it).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import hmac
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from im2txt_standins.tls import StandInCA, connect_host, start_tls

BLOCK_SIZE = 4 * 1024 * 1024  # UFile's ETag block and multipart part size
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 1000

# (HTTP status, RetCode, ErrMsg); the codes are this stand-in's, the statuses follow UFile.
ERR_NO_AUTH = (401, -148651, "no authorization found")
ERR_BAD_KEY = (403, -148652, "invalid public key")
ERR_SIGNATURE = (403, -148653, "signature not match")
ERR_EXPIRED = (403, -148654, "signature expired")
ERR_NOT_FOUND = (404, -148655, "file not exist")
ERR_BAD_RANGE = (416, -148656, "invalid range")
ERR_BAD_MD5 = (400, -148657, "content md5 not match")
ERR_NO_UPLOAD = (404, -148658, "upload id not found")
ERR_BAD_PARTS = (400, -148659, "invalid part etag list")
ERR_BAD_REQUEST = (400, -148660, "bad request")
ERR_INJECTED = (503, -148699, "injected fault")


def ufile_etag(data: bytes, block_size: int = BLOCK_SIZE) -> str:
    """UFile's content ETag (what HEAD/PUT/finish return and the listing calls `Hash`)."""
    digests = [hashlib.sha1(data[i : i + block_size]).digest() for i in range(0, len(data), block_size)]
    digest = hashlib.sha1(b"".join(digests)).digest() if len(digests) > 1 else b"".join(digests)
    return base64.urlsafe_b64encode(struct.pack("<I", len(digests)) + digest).decode()


def string_to_sign(
    method: str,
    bucket: str,
    key: str,
    headers: Mapping[str, str],
    *,
    date_or_expires: str,
    content_type: str | None = None,
    list_params: Mapping[str, str] | None = None,
) -> str:
    """The canonical string UFile signs (see the module docstring)."""
    lower = {k.lower(): v for k, v in headers.items()}
    ctype = lower.get("content-type", "") if content_type is None else content_type
    ucloud = sorted((k.strip(), v.strip()) for k, v in lower.items() if k.strip().startswith("x-ucloud-"))
    canon_headers = "".join(f"{k}:{v}\n" for k, v in ucloud)
    text = f"{method.upper()}\n{lower.get('content-md5', '')}\n{ctype}\n{date_or_expires}\n"
    text += f"{canon_headers}/{bucket}/{key}"
    if list_params is not None:
        text += "\nlistobjects" + "".join(
            f"\n{name}:{list_params.get(name, '')}" for name in ("delimiter", "marker", "max-keys", "prefix")
        )
    return text


def sign(private_key: str, text: str) -> str:
    return base64.standard_b64encode(hmac.new(private_key.encode(), text.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Fault:
    """One fault rule: the next `count` requests matching `method` and the key pattern get `kind`.

    kind: "status" (answer `status` with a UFile error body), "slow" (sleep `delay` seconds, then answer
    normally), "reset" (close the connection with a TCP RST instead of answering), "truncate" (send the
    headers with the full Content-Length and only half of the body, then close; an empty answer gets a small
    body to cut). The request itself is carried out for "slow" and "truncate" (the answer is what is lost).
    count < 0: forever.
    `query` matches a query parameter name that must be present (e.g. "partNumber", "list").
    """

    kind: str
    method: str = "*"
    key: str = "*"
    count: int = 1
    status: int = 503
    delay: float = 2.0
    query: str | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in {"status", "slow", "reset", "truncate"}:
            raise ValueError(f"Fault.kind must be status|slow|reset|truncate, got {self.kind!r}")

    def matches(self, method: str, key: str, query: Mapping[str, object]) -> bool:
        return (
            self.count != 0
            and fnmatch.fnmatchcase(method, self.method.upper())
            and fnmatch.fnmatchcase(key, self.key)
            and (self.query is None or self.query in query)
        )


@dataclass
class StoredObject:
    data: bytes
    mime: str
    etag: str
    modified: float


@dataclass
class Upload:
    bucket: str
    key: str
    mime: str
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class RequestRecord:
    method: str
    host: str
    bucket: str
    key: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0
    fault: str | None = None
    tls: bool = False  # came through a CONNECT tunnel, over TLS


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _error(err: tuple[int, int, str], detail: str = "") -> Response:
    status, code, msg = err
    body = json.dumps({"RetCode": code, "ErrMsg": msg + (f": {detail}" if detail else "")}).encode()
    return Response(status, {"Content-Type": "application/json", "X-SessionId": uuid.uuid4().hex}, body)


def _json(payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode())


class ObjectStore:
    """Objects in memory, mirrored to `root/<bucket>/<key>` when a root folder is given (loaded at start)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, StoredObject]] = {}
        if root is not None:
            self._load(root)

    def _load(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.startswith(".ufile-tmp-"):
                bucket, _, key = path.relative_to(root).as_posix().partition("/")
                if key:
                    data = path.read_bytes()
                    self._buckets.setdefault(bucket, {})[key] = StoredObject(
                        data, "application/octet-stream", ufile_etag(data), path.stat().st_mtime
                    )

    def put(self, bucket: str, key: str, data: bytes, mime: str = "application/octet-stream") -> StoredObject:
        obj = StoredObject(data, mime, ufile_etag(data), time.time())
        with self._lock:
            if self.root is not None:
                path = self.root / bucket / key
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".ufile-tmp-{uuid.uuid4().hex}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            self._buckets.setdefault(bucket, {})[key] = obj
        return obj

    def get(self, bucket: str, key: str) -> StoredObject | None:
        with self._lock:
            return self._buckets.get(bucket, {}).get(key)

    def delete(self, bucket: str, key: str) -> bool:
        with self._lock:
            found = self._buckets.get(bucket, {}).pop(key, None) is not None
            if found and self.root is not None:
                (self.root / bucket / key).unlink(missing_ok=True)
            return found

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self._buckets.get(bucket, {}) if k.startswith(prefix))


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-`, `bytes=-n` -> inclusive (start, end), or None when unsatisfiable."""
    unit, _, rng = spec.partition("=")
    if unit.strip() != "bytes" or "," in rng or "-" not in rng:
        return None
    first, _, last = rng.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            start, end = max(size - n, 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if 0 <= start <= end < size else None


def _parse_form(content_type: str, body: bytes) -> dict[str, tuple[dict[str, str], bytes]]:
    """multipart/form-data -> {name: (part headers, value)}; tolerant of the SDK's missing closing `--`."""
    boundary = content_type.partition("boundary=")[2].strip().strip('"')
    fields: dict[str, tuple[dict[str, str], bytes]] = {}
    if not boundary:
        return fields
    for chunk in body.split(b"--" + boundary.encode()):
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = {}
        for line in head.decode("utf-8", "replace").strip("\r\n").split("\r\n"):
            name, _, val = line.partition(":")
            headers[name.strip().lower()] = val.strip()
        disposition = headers.get("content-disposition", "")
        name = ""
        for item in disposition.split(";"):
            k, _, v = item.strip().partition("=")
            if k == "name":
                name = v.strip('"')
        if name:
            fields[name] = (headers, value[:-2] if value.endswith(b"\r\n") else value)
    return fields


class UFileService:
    """The request logic: (method, host, path, headers, body) -> Response. No sockets here."""

    def __init__(self, keys: Mapping[str, str], store: ObjectStore, block_size: int = BLOCK_SIZE) -> None:
        self.keys = dict(keys)
        self.store = store
        self.block_size = block_size
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()

    # -- authorisation -------------------------------------------------------------------------------
    def _check_auth(
        self, method: str, bucket: str, key: str, query: dict[str, list[str]], headers: Mapping[str, str]
    ) -> Response | None:
        q = {k: v[0] for k, v in query.items()}
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        date = next((v for k, v in headers.items() if k.lower() == "date"), "")
        if auth:
            scheme, _, cred = auth.partition(" ")
            public, _, signature = cred.partition(":")
            if scheme != "UCloud" or not signature:
                return _error(ERR_NO_AUTH, "expected 'UCloud <public key>:<signature>'")
            list_params = q if "listobjects" in q else None
            text = string_to_sign(method, bucket, key, headers, date_or_expires=date, list_params=list_params)
        elif "UCloudPublicKey" in q:
            public, signature, expires = q["UCloudPublicKey"], q.get("Signature", ""), q.get("Expires", "")
            if not expires.isdigit() or int(expires) < time.time():
                return _error(ERR_EXPIRED)
            text = string_to_sign(method, bucket, key, headers, date_or_expires=expires)
        else:
            return _error(ERR_NO_AUTH)
        return self._verify(public, signature, text)

    def _verify(self, public: str, signature: str, text: str) -> Response | None:
        private = self.keys.get(public)
        if private is None:
            return _error(ERR_BAD_KEY)
        if not hmac.compare_digest(sign(private, text), signature):
            return _error(ERR_SIGNATURE)
        return None

    # -- routing -------------------------------------------------------------------------------------
    def handle(
        self, method: str, bucket: str, key: str, query: dict[str, list[str]], headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        if method == "POST" and key == "" and not query:
            return self._form_upload(bucket, headers, body)
        denied = self._check_auth(method, bucket, key, query, headers)
        if denied is not None:
            return denied
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/octet-stream")
        if method == "GET" and key == "" and "list" in query:
            return self._prefix_list(bucket, query)
        if method == "GET" and key == "" and "listobjects" in query:
            return self._list_objects(bucket, query)
        if method in {"GET", "HEAD"}:
            return self._get(bucket, key, headers, head=method == "HEAD")
        if method == "PUT" and "uploadId" in query:
            return self._upload_part(query, key, body)
        if method == "PUT":
            return self._put(bucket, key, ctype, headers, body)
        if method == "POST" and "uploads" in query:
            return self._initiate(bucket, key, ctype)
        if method == "POST" and "uploadId" in query:
            return self._finish(bucket, key, query, body)
        if method == "DELETE" and "uploadId" in query:
            with self._lock:
                found = self._uploads.pop(query["uploadId"][0], None)
            return Response(204) if found else _error(ERR_NO_UPLOAD)
        if method == "DELETE":
            return Response(204) if self.store.delete(bucket, key) else _error(ERR_NOT_FOUND, key)
        return _error(ERR_BAD_REQUEST, f"unsupported {method}")

    def _prefix_list(self, bucket: str, query: dict[str, list[str]]) -> Response:
        prefix = query.get("prefix", [""])[0]
        marker = query.get("marker", [""])[0]
        try:
            limit = min(int(query.get("limit", [str(DEFAULT_LIST_LIMIT)])[0]), MAX_LIST_LIMIT)
        except ValueError:
            return _error(ERR_BAD_REQUEST, "limit must be an integer")
        keys = [k for k in self.store.keys(bucket, prefix) if k > marker]
        page, more = keys[:limit], len(keys) > limit
        data = []
        for k in page:
            obj = self.store.get(bucket, k)
            if obj is not None:
                data.append({
                    "BucketName": bucket, "FileName": k, "Hash": obj.etag, "MimeType": obj.mime,
                    "Size": len(obj.data), "CreateTime": int(obj.modified), "ModifyTime": int(obj.modified),
                    "StorageClass": "STANDARD",
                })
        next_marker = page[-1] if more and page else ""
        return _json({"BucketName": bucket, "BucketId": f"ufile-{bucket}", "NextMarker": next_marker, "DataSet": data})

    def _list_objects(self, bucket: str, query: dict[str, list[str]]) -> Response:
        prefix = query.get("prefix", [""])[0]
        marker = query.get("marker", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        limit = min(int(query.get("max-keys", ["100"])[0] or 100), MAX_LIST_LIMIT)
        contents, prefixes, last, truncated = [], [], "", False
        for k in self.store.keys(bucket, prefix):
            if k <= marker:
                continue
            if len(contents) + len(prefixes) >= limit:
                truncated = True
                break
            rest = k[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if not prefixes or prefixes[-1]["Prefix"] != common:
                    prefixes.append({"Prefix": common})
                last = common
                continue
            obj = self.store.get(bucket, k)
            if obj is not None:
                contents.append({"Key": k, "MimeType": obj.mime, "LastModified": int(obj.modified),
                                 "CreateTime": int(obj.modified), "Etag": obj.etag, "Size": str(len(obj.data)),
                                 "StorageClass": "STANDARD", "UserMeta": None})
                last = k
        return _json({"Name": bucket, "Prefix": prefix, "MaxKeys": str(limit), "Delimiter": delimiter,
                      "IsTruncated": truncated, "NextMarker": last if truncated else "",
                      "Contents": contents, "CommonPrefixes": prefixes})

    def _get(self, bucket: str, key: str, headers: Mapping[str, str], *, head: bool) -> Response:
        obj = self.store.get(bucket, key)
        if obj is None:
            return _error(ERR_NOT_FOUND, key)
        base = {"Content-Type": obj.mime, "ETag": f'"{obj.etag}"', "Accept-Ranges": "bytes",
                "Last-Modified": formatdate(obj.modified, usegmt=True)}
        rng = next((v for k, v in headers.items() if k.lower() == "range"), None)
        if rng and not head:
            span = _parse_range(rng, len(obj.data))
            if span is None:
                return _error(ERR_BAD_RANGE, rng)
            start, end = span
            return Response(206, {**base, "Content-Range": f"bytes {start}-{end}/{len(obj.data)}"},
                            obj.data[start : end + 1])
        return Response(200, {**base, "Content-Length": str(len(obj.data))}, b"" if head else obj.data)

    def _put(self, bucket: str, key: str, ctype: str, headers: Mapping[str, str], body: bytes) -> Response:
        md5 = next((v for k, v in headers.items() if k.lower() == "content-md5"), "")
        # The SDK sends the hex digest; accept base64 as well.
        if md5 and md5 not in {hashlib.md5(body).hexdigest(), base64.b64encode(hashlib.md5(body).digest()).decode()}:
            return _error(ERR_BAD_MD5, key)
        obj = self.store.put(bucket, key, body, ctype)
        return Response(200, {"ETag": f'"{obj.etag}"'})

    def _form_upload(self, bucket: str, headers: Mapping[str, str], body: bytes) -> Response:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        fields = _parse_form(ctype, body)
        if "FileName" not in fields or "file" not in fields:
            return _error(ERR_BAD_REQUEST, "form upload needs FileName and file fields")
        key = fields["FileName"][1].decode()
        auth = fields.get("Authorization", ({}, b""))[1].decode()
        file_headers, data = fields["file"]
        mime = file_headers.get("content-type", "application/octet-stream")
        public, _, signature = auth.partition(" ")[2].partition(":")
        if not signature:
            return _error(ERR_NO_AUTH)
        denied = self._verify(public, signature, string_to_sign(
            "POST", bucket, key, {}, date_or_expires="", content_type=mime))
        if denied is not None:
            return denied
        obj = self.store.put(bucket, key, data, mime)
        return Response(200, {"ETag": f'"{obj.etag}"'})

    def _initiate(self, bucket: str, key: str, ctype: str) -> Response:
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._uploads[upload_id] = Upload(bucket, key, ctype)
        return _json({"UploadId": upload_id, "BlkSize": self.block_size, "Bucket": bucket, "Key": key})

    def _upload_part(self, query: dict[str, list[str]], key: str, body: bytes) -> Response:
        upload_id = query["uploadId"][0]
        try:
            number = int(query.get("partNumber", [""])[0])
        except ValueError:
            return _error(ERR_BAD_REQUEST, "partNumber must be an integer")
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or upload.key != key:
                return _error(ERR_NO_UPLOAD, upload_id)
            upload.parts[number] = body
        return Response(200, {"ETag": f'"{ufile_etag(body)}"', "Content-Type": "application/json"},
                        json.dumps({"PartNumber": number}).encode())

    def _finish(self, bucket: str, key: str, query: dict[str, list[str]], body: bytes) -> Response:
        upload_id = query["uploadId"][0]
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or upload.key != key or upload.bucket != bucket:
                return _error(ERR_NO_UPLOAD, upload_id)
            etags = [e.strip().strip('"') for e in body.decode().split(",") if e.strip()]
            parts = [upload.parts.get(i) for i in range(len(etags))]
            if (
                not etags
                or len(etags) != len(upload.parts)
                or any(p is None or ufile_etag(p) != e for p, e in zip(parts, etags, strict=True))
                or any(len(p or b"") != self.block_size for p in parts[:-1])
            ):
                return _error(ERR_BAD_PARTS, f"{len(etags)} etags for {len(upload.parts)} parts")
            del self._uploads[upload_id]
        data = b"".join(p or b"" for p in parts)
        obj = self.store.put(bucket, key, data, upload.mime)
        return _json({"Bucket": bucket, "Key": key, "FileSize": len(data)}, {"ETag": f'"{obj.etag}"'})

    def pending_uploads(self) -> int:
        with self._lock:
            return len(self._uploads)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `requests_log`
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        host = (url.netloc if url.scheme else self.headers.get("Host", "")).split(":")[0]
        bucket = host.split(".", 1)[0]
        key = unquote(url.path[1:]) if url.path else ""
        query = parse_qs(url.query, keep_blank_values=True)
        headers = dict(self.headers.items())
        body = self._read_body()
        record = RequestRecord(self.command, host, bucket, key, query, headers,
                               tls=isinstance(self.connection, ssl.SSLSocket))
        fault = owner.take_fault(self.command, key, query)
        record.fault = fault.kind if fault else None
        owner.record(record)
        if owner.latency:
            time.sleep(owner.latency)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None and fault.kind == "status":
            resp = _error((fault.status, ERR_INJECTED[1], ERR_INJECTED[2]))
        else:
            resp = owner.service.handle(self.command, bucket, key, query, headers, body)
        record.status = resp.status
        if fault is not None and fault.kind == "truncate" and len(resp.body) < 2 and self.command != "HEAD":
            # Nothing to cut (a PUT's answer is empty): announce a small JSON body and cut that instead.
            resp.body = json.dumps({"RetCode": 0, "ErrMsg": ""}).encode()
            resp.headers.pop("Content-Length", None)
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in resp.headers:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(resp.body[: len(resp.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(resp.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    def do_CONNECT(self) -> None:
        """An https:// request through the proxy: the tunnel ends here, in TLS for the host it names."""
        ca = self.server.owner.ca
        if ca is None or isinstance(self.connection, ssl.SSLSocket):
            self.send_error(405, "this stand-in serves plain HTTP only")
            return
        start_tls(self, ca, connect_host(self.path))
        self.close_connection = False  # http.client says CONNECT in HTTP/1.0; the tunnel carries many requests


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: UFileServer

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timeout on a slow answer) closes its end: expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class UFileServer:
    """A threaded UFile stand-in. Use as a context manager; `proxy_url` goes into HTTP_PROXY."""

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        root: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        block_size: int = BLOCK_SIZE,
        tls: bool = True,
    ) -> None:
        # HTTPS through CONNECT with a CA made here (clients trust `ca.bundle()`); plain HTTP is served as well.
        self.ca = StandInCA() if tls else None
        self.store = ObjectStore(Path(root) if root is not None else None)
        self.service = UFileService(keys, self.store, block_size)
        self.latency = 0.0
        self.faults: list[Fault] = []
        self.requests_log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def proxy_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What a client process needs to reach the stand-in: the proxy for both schemes and the CA to trust."""
        env = {"HTTP_PROXY": self.proxy_url, "HTTPS_PROXY": self.proxy_url}
        if self.ca is not None:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca.bundle())
        return env

    def start(self) -> UFileServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="ufile-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.ca is not None:
            self.ca.close()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def __enter__(self) -> UFileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and the request log ------------------------------------------------------------------
    def add_fault(self, fault: Fault | None = None, **kwargs: object) -> Fault:
        rule = fault if fault is not None else Fault(**kwargs)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, method: str, key: str, query: Mapping[str, object]) -> Fault | None:
        with self._lock:
            for rule in self.faults:
                if rule.matches(method, key, query):
                    rule.count -= 1 if rule.count > 0 else 0
                    rule.hits += 1
                    return rule
        return None

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests_log.append(rec)

    def requests_matching(self, method: str = "*", key: str = "*") -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests_log
                    if fnmatch.fnmatchcase(r.method, method) and fnmatch.fnmatchcase(r.key, key)]

    # -- direct object access for tests --------------------------------------------------------------
    def put_object(self, bucket: str, key: str, data: bytes) -> str:
        return self.store.put(bucket, key, data).etag

    def get_object(self, bucket: str, key: str) -> bytes | None:
        obj = self.store.get(bucket, key)
        return None if obj is None else obj.data

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return self.store.keys(bucket, prefix)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        for k in self.store.keys(bucket, prefix):
            data = self.get_object(bucket, k)
            if data is not None:
                yield k, data


def _read_secret(value: str | None, file: str | None, env: str, what: str) -> str:
    if file:
        return Path(file).read_text().strip()
    if value:
        return value
    if os.environ.get(env):
        return os.environ[env]
    raise SystemExit(f"ufile_server: no {what}: set {env} or pass --{what.replace(' ', '-')}-file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m im2txt_standins.ufile_server",
        description="Local UFile-compatible server (tests/demo). Keys from env UFILE_PUBLIC_KEY/"
        "UFILE_PRIVATE_KEY or from files; point clients at it with HTTPS_PROXY=http://HOST:PORT (and "
        "REQUESTS_CA_BUNDLE=<--ca-file>) or, for plain HTTP, HTTP_PROXY.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--root", help="folder that holds the objects as ROOT/<bucket>/<key> (default: memory)")
    parser.add_argument("--public-key", help="public key (prefer env UFILE_PUBLIC_KEY)")
    parser.add_argument("--public-key-file")
    parser.add_argument("--private-key-file", help="file holding the private key (or env UFILE_PRIVATE_KEY)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--url-file", help="write the proxy URL (http://HOST:PORT) to this file once listening")
    parser.add_argument("--ca-file", help="write the CA certificate that clients must trust (REQUESTS_CA_BUNDLE) "
                        "for https:// requests through the proxy to this file")
    args = parser.parse_args(argv)
    public = _read_secret(args.public_key, args.public_key_file, "UFILE_PUBLIC_KEY", "public key")
    private = _read_secret(None, args.private_key_file, "UFILE_PRIVATE_KEY", "private key")
    server = UFileServer({public: private}, root=args.root, host=args.host, port=args.port)
    server.latency = args.latency
    if args.ca_file and server.ca is not None:
        Path(args.ca_file).write_bytes(server.ca.cert_pem)

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server._httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.url_file:
        tmp = Path(args.url_file + ".tmp")
        tmp.write_text(server.proxy_url + "\n")
        os.replace(tmp, args.url_file)
    print(f"ufile stand-in listening on {server.proxy_url} (use HTTPS_PROXY={server.proxy_url}, and "
          "REQUESTS_CA_BUNDLE=<--ca-file>)", flush=True)
    try:
        server.serve_forever()
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
