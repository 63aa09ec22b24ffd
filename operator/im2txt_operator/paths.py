"""Storage paths of a training: ``ufile://<bucket>/<prefix>/`` or ``pvc://<claim>/<sub/path>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Same patterns as the CRD schema (crds/im2txt.dev_im2txttrainings.yaml), split by scheme.
# UFile bucket names: 3-63 lowercase letters, digits and hyphens. Key segments may not hold `%?#`, which the
# ufile SDK cannot put in a URL.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_UFILE = re.compile(rf"ufile://(?P<bucket>{_BUCKET.pattern})/(?P<prefix>([^/\s%?#]+/)*)")
_PVC = re.compile(r"pvc://(?P<claim>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(?P<sub>(/[^/\s]+)*)/?")
EXPECTED = "ufile://<bucket>/<prefix>/ or pvc://<claim>/<sub/path>"


@dataclass(frozen=True)
class UFilePath:
    bucket: str
    prefix: str  # "" or ends with "/"

    @property
    def url(self) -> str:
        return f"ufile://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class PvcPath:
    claim: str
    sub_path: str  # "" for the claim's root, else no leading/trailing "/"

    @property
    def url(self) -> str:
        return f"pvc://{self.claim}/{self.sub_path}" if self.sub_path else f"pvc://{self.claim}/"


StoragePath = UFilePath | PvcPath


def parse_path(value: object) -> StoragePath:
    """Parse a storage path; raises ValueError saying what is expected (the caller adds the field)."""
    if not isinstance(value, str):
        raise ValueError(f"expected {EXPECTED}, got {value!r}")
    if m := _UFILE.fullmatch(value):
        return UFilePath(bucket=m["bucket"], prefix=m["prefix"])
    if m := _PVC.fullmatch(value):
        return PvcPath(claim=m["claim"], sub_path=m["sub"].strip("/"))
    hint = ""
    if value.startswith("ufile://"):
        bucket, _, prefix = value[len("ufile://"):].partition("/")
        if not _BUCKET.fullmatch(bucket):
            hint = " (a UFile bucket name is 3-63 lowercase letters, digits and '-', no dots)"
        elif not value.endswith("/"):
            hint = " (a ufile:// prefix must end with '/')"
        elif set(prefix) & set("%?#"):
            hint = " (a ufile:// prefix may not hold '%', '?' or '#')"
    raise ValueError(f"expected {EXPECTED}, got {value!r}{hint}")
