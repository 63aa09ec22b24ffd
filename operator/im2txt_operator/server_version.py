"""The Kubernetes versions the operator supports, and the check of the API server's version at start.

1.29 is the oldest: a 1.28 API server silently drops ``restartPolicy: Always`` from an init container (the
native sidecar that uploads checkpoints), so on 1.28 a ufile:// training would wait in Init for ever while its
Job reads active. 1.36 is the newest minor the real-API tests run on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

OLDEST = (1, 29)
NEWEST_TESTED = (1, 36)
SUPPORTED = f"{OLDEST[0]}.{OLDEST[1]} to {NEWEST_TESTED[0]}.{NEWEST_TESTED[1]}"
_DIGITS = re.compile(r"\d+")
_GIT_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def parse(info: Mapping[str, Any]) -> tuple[int, int] | None:
    """(major, minor) from the API server's /version answer. Managed clusters spell the minor "29+" (GKE, EKS);
    gitVersion ("v1.29.3-gke.100") is the fallback."""
    major, minor = _DIGITS.match(str(info.get("major", ""))), _DIGITS.match(str(info.get("minor", "")))
    if major and minor:
        return int(major.group()), int(minor.group())
    git = _GIT_VERSION.match(str(info.get("gitVersion", "")))
    return (int(git.group(1)), int(git.group(2))) if git else None


def refusal(info: Mapping[str, Any]) -> str | None:
    """Why the operator must not run against this server, or None when it may."""
    version = parse(info)
    shown = info.get("gitVersion") or f"{info.get('major')}.{info.get('minor')}"
    if version is None:
        return f"cannot tell the Kubernetes version from the API server's /version answer ({shown!r})"
    if version < OLDEST:
        return (f"Kubernetes {shown} is older than {OLDEST[0]}.{OLDEST[1]}, the oldest this operator supports "
                f"(supported: {SUPPORTED}). Below {OLDEST[0]}.{OLDEST[1]} the API server drops the checkpoint "
                "sidecar's restartPolicy: Always, and a training's pod would never leave Init. Upgrade the control "
                "plane; the operator starts by itself once the server is new enough.")
    return None


def untested(info: Mapping[str, Any]) -> bool:
    """Newer than the newest minor the tests run on: allowed (Kubernetes keeps its APIs), but worth a line."""
    version = parse(info)
    return version is not None and version > NEWEST_TESTED
