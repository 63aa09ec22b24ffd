"""Local bytes the client handles: a (possibly cut) ranged answer folded into a partial download, and UFile's
ETag of data held in memory."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from pathlib import Path

from ufile import config as sdk_config


def keep_received(part: Path, rest: Path, have: int, answer: tuple[int, str | None] | None) -> None:
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


def bytes_etag(data: bytes) -> str:
    """UFile's ETag of in-memory data: the SDK's `file_etag` algorithm (4 MiB blocks), for bytes."""
    block = sdk_config.BLOCKSIZE
    digests = [hashlib.sha1(data[i : i + block]).digest() for i in range(0, len(data), block)]
    digest = hashlib.sha1(b"".join(digests)).digest() if len(digests) > 1 else b"".join(digests)
    return base64.urlsafe_b64encode(struct.pack("<I", len(digests)) + digest).decode()
