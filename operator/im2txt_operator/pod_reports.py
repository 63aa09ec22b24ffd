"""What a stage's pods report when their containers end, pure: the failed container's one-line reason, the sync
sidecar's final-upload failure, and the checkpoint the sync sidecar last published (from its log).

Every container the operator makes has ``terminationMessagePolicy: FallbackToLogsOnError``: the trainer writes
``trainer: <reason>`` and the storage commands ``<command>: <reason>`` to the termination log, and a container that
wrote nothing leaves the end of its log there instead. The kubelet copies that into the pod's status, where the
operator reads it with the pod list it makes anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

OUTPUT_CHECK = "output-check"
SYNC = "sync"
MAX_REASON = 400  # characters of a container's reason kept in status (a column and an Event stay readable)
# Lines that already say which command wrote them (termination messages of ours); anything else gets the name.
_OWN_PREFIXES = ("trainer:", "fetch:", "sync:", "mirror:", "output-check:")
_PUBLISHED = re.compile(r"published checkpoint model\.ckpt-(\d+)")


@dataclass(frozen=True)
class ContainerFailure:
    """One container that ended with a non-zero exit code, and why."""

    pod: str
    container: str
    exit_code: int
    reason: str  # one line, e.g. "trainer: --train_dir '/data/output/' is not writable: Permission denied"

    def text(self) -> str:
        return f"{self.reason} (pod {self.pod}, exit {self.exit_code})"


def _one_line(container: str, terminated: Mapping[str, Any]) -> str:
    lines = [ln.strip() for ln in str(terminated.get("message") or "").splitlines() if ln.strip()]
    line = lines[-1] if lines else str(terminated.get("reason") or "Error")
    if not line.startswith(_OWN_PREFIXES):
        line = f"{container}: {line}"
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def _failures(pod: Mapping[str, Any]) -> Iterator[tuple[int, ContainerFailure]]:
    """(rank, failure) of each container of the pod that exited non-zero. Rank orders the causes: an init
    container that failed kept everything after it from running (0), then the main containers (1), then native
    sidecars, which are stopped after the main containers and fail last (2)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    sidecars = {c.get("name") for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"}
    name = (pod.get("metadata") or {}).get("name", "")
    for key, rank in (("initContainerStatuses", 0), ("containerStatuses", 1)):
        for c in status.get(key) or ():
            terminated = (c.get("state") or {}).get("terminated") or (c.get("lastState") or {}).get("terminated")
            if not terminated or not terminated.get("exitCode"):
                continue
            container = c.get("name", "")
            yield (2 if container in sidecars else rank), ContainerFailure(
                name, container, int(terminated["exitCode"]), _one_line(container, terminated))


def _newest(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)


def stage_failure(pods: Iterable[Mapping[str, Any]]) -> ContainerFailure | None:
    """Why the newest failed pod failed: its first failed container by rank (see ``_failures``)."""
    for pod in _newest(p for p in pods if (p.get("status") or {}).get("phase") == "Failed"):
        found = sorted(_failures(pod), key=lambda f: f[0])
        if found:
            return found[0][1]
    return None


def pod_failure(pod: Mapping[str, Any]) -> ContainerFailure | None:
    """The first failed container of one pod by rank (see ``_failures``), its last crash included for a container
    that restarts in place (a Deployment's)."""
    found = sorted(_failures(pod), key=lambda f: f[0])
    return found[0][1] if found else None


def upload_failure(pods: Iterable[Mapping[str, Any]]) -> ContainerFailure | None:
    """The sync sidecar's failure in the newest pod whose sidecar ended (a final upload that missed its deadline
    ends the sidecar with exit 1 and `sync: <which checkpoint the bucket's index names now>`), or None when that
    sidecar ended well or none ended yet."""
    for pod in _newest(pods):
        statuses = (pod.get("status") or {}).get("initContainerStatuses") or ()
        sync = next((c for c in statuses if c.get("name") == SYNC), None)
        terminated = ((sync or {}).get("state") or {}).get("terminated")
        if terminated is None:
            continue
        if not terminated.get("exitCode"):
            return None
        return {f.container: f for _, f in _failures(pod)}.get(SYNC)
    return None


def published_step(log: str) -> int | None:
    """The global step of the checkpoint the sync sidecar last published (its index uploaded), from its log."""
    found = _PUBLISHED.findall(log)
    return int(found[-1]) if found else None
