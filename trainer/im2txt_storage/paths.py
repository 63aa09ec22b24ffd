"""Storage paths of a training, `ufile://<bucket>/<prefix>/` or `pvc://<claim>/<sub/path>`, and the mapping
between object keys and local relative paths.

This is the one parser of the storage URL format: the storage commands use it, and so does the operator
(im2txt_operator imports this module, so it stays free of SDK imports), so a path the operator accepts is one
the commands accept. The CRD's dataPath/outputPath pattern is PATH_PATTERN, character for character (a test
keeps them equal); it is written for both Go's RE2 (the API server) and Python's re.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# UFile bucket names: 3-63 lowercase letters, digits and hyphens.
BUCKET_PATTERN = r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]"
# A PersistentVolumeClaim name as the operator accepts it: a DNS label.
CLAIM_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# No part of a path holds a space, a control character or a backslash; the SDK puts keys into URLs unquoted, so
# a '%', '?' or '#' in a key changes the URL (and the signature fails).
_NEVER = r"/\\\x00-\x20\x7f"
_UNSENDABLE = "%?#"


def _segment(never: str) -> str:
    """One path part, anything but '', '.' and '..' (RE2 has no lookahead, so the three cases are spelled out)."""
    char, first = f"[^{never}]", f"[^.{never}]"
    return rf"({first}{char}*|\.{first}{char}*|\.\.{char}+)"


UFILE_PATTERN = rf"ufile://{BUCKET_PATTERN}/({_segment(_NEVER + _UNSENDABLE)}/)*"
PVC_PATTERN = rf"pvc://{CLAIM_PATTERN}(/{_segment(_NEVER)})*/?"
PATH_PATTERN = rf"^({UFILE_PATTERN}|{PVC_PATTERN})$"
EXPECTED = "ufile://<bucket>/<prefix>/ or pvc://<claim>/<sub/path>"

_PATH = re.compile(PATH_PATTERN)
_BUCKET = re.compile(BUCKET_PATTERN)
_CLAIM = re.compile(CLAIM_PATTERN)


@dataclass(frozen=True)
class UFilePath:
    """`ufile://<bucket>/<prefix>`: the prefix is a folder, "" (the whole bucket) or ending with "/"."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"ufile://{self.bucket}/{self.prefix}"

    def key(self, relpath: str) -> str:
        return self.prefix + relpath

    def relpath(self, key: str) -> str | None:
        """The local relative path for `key`, or None for a folder placeholder or an unsafe name."""
        if not key.startswith(self.prefix):
            return None
        return safe_relpath(key[len(self.prefix) :])

    def __str__(self) -> str:
        return self.url


UFileURL = UFilePath  # the storage commands' name for it


@dataclass(frozen=True)
class PvcPath:
    claim: str
    sub_path: str  # "" for the claim's root, else no leading/trailing "/"

    @property
    def url(self) -> str:
        return f"pvc://{self.claim}/{self.sub_path}" if self.sub_path else f"pvc://{self.claim}/"

    def __str__(self) -> str:
        return self.url


StoragePath = UFilePath | PvcPath


def _problem(value: str) -> str:
    """Why `value` (which does not match PATH_PATTERN) is refused, as precisely as can be told."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("ufile", "pvc"):
        return ""
    head, slash, tail = rest.partition("/")
    if scheme == "ufile" and not _BUCKET.fullmatch(head):
        return "a UFile bucket name is 3-63 lowercase letters, digits and '-', no dots"
    if scheme == "pvc" and not _CLAIM.fullmatch(head):
        return "a claim name is lowercase letters, digits and '-', starting and ending with a letter or digit"
    parts = tail.split("/")
    if tail.endswith("/"):
        parts = parts[:-1]
    if tail and any(p in ("", ".", "..") for p in parts):
        return "a path may not have empty, '.' or '..' parts"
    if any(re.search(f"[{_NEVER}]", p) for p in parts):
        return "a path may not hold spaces, control characters or '\\'"
    if scheme == "ufile":
        if set(tail) & set(_UNSENDABLE):
            return "a ufile:// prefix may not hold '%', '?' or '#'"
        if not slash or (tail and not tail.endswith("/")):
            return "a ufile:// prefix must end with '/'"
    return ""


def parse_path(value: object) -> StoragePath:
    """Parse a storage path; raises ValueError saying what is expected (the caller adds the field)."""
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        problem = _problem(value) if isinstance(value, str) else ""
        raise ValueError(f"expected {EXPECTED}, got {value!r}" + (f" ({problem})" if problem else ""))
    scheme, _, rest = value.partition("://")
    head, _, tail = rest.partition("/")
    if scheme == "ufile":
        return UFilePath(bucket=head, prefix=tail)
    return PvcPath(claim=head, sub_path=tail.strip("/"))


def parse_ufile_url(url: object, *, field: str = "url") -> UFilePath:
    """Parse `ufile://<bucket>/<prefix>/` exactly as the operator does (parse_path); errors start with `field`."""
    if not isinstance(url, str) or not url.startswith("ufile://"):
        raise ValueError(f"{field}: {url!r} is not a UFile URL; expected ufile://<bucket>/<prefix>/")
    try:
        parsed = parse_path(url)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    assert isinstance(parsed, UFilePath)
    return parsed


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
