"""`ufile://<bucket>/<prefix>/` URLs and the mapping between object keys and local relative paths."""

from __future__ import annotations

import re
from dataclasses import dataclass

# UFile bucket names: 3-63 characters, lowercase letters, digits and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# The SDK puts keys into URLs unquoted: a '%', '?' or '#' in a key changes the URL, and the signature fails.
_UNSENDABLE = "%?#"


@dataclass(frozen=True)
class UFileURL:
    bucket: str
    prefix: str  # "" (whole bucket) or ends with "/"

    def key(self, relpath: str) -> str:
        return self.prefix + relpath

    def relpath(self, key: str) -> str | None:
        """The local relative path for `key`, or None for a folder placeholder or an unsafe name."""
        if not key.startswith(self.prefix):
            return None
        return safe_relpath(key[len(self.prefix) :])

    def __str__(self) -> str:
        return f"ufile://{self.bucket}/{self.prefix}"


def parse_ufile_url(url: str, *, field: str = "url") -> UFileURL:
    """Parse `ufile://bucket/prefix/`; the prefix is a folder (a missing trailing slash is added)."""
    expected = "expected ufile://<bucket>/<prefix>/"
    if not isinstance(url, str) or not url.startswith("ufile://"):
        raise ValueError(f"{field}: {url!r} is not a UFile URL; {expected}")
    bucket, _, prefix = url[len("ufile://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"{field}: bucket {bucket!r} in {url!r} is not a valid UFile bucket name "
            "(3-63 lowercase letters, digits, hyphens); " + expected
        )
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if prefix and safe_relpath(prefix.rstrip("/")) is None:
        raise ValueError(f"{field}: prefix {prefix!r} in {url!r} has empty, '.' or '..' parts; {expected}")
    return UFileURL(bucket, prefix)


def safe_relpath(rel: str) -> str | None:
    """`rel` if it is a plain relative file path (no '', '.', '..' parts, not a folder, nothing the SDK cannot
    put in a URL); else None."""
    if not rel or rel.endswith("/") or rel.startswith("/"):
        return None
    if any(c in rel for c in _UNSENDABLE) or any(ord(c) < 32 for c in rel):
        return None
    parts = rel.split("/")
    if any(p in {"", ".", ".."} for p in parts) or "\\" in rel or "\x00" in rel:
        return None
    return rel
