"""The container's termination message: one line saying why a storage command failed.

Kubernetes shows the file's content (`terminationMessagePath`, `/dev/termination-log` by default) in the pod's
status, where the operator reads it into the stage's Failed condition and a Warning Event. Kubernetes creates the
file; outside a pod it usually does not exist, so the default path is written only if it is already there.
`IM2TXT_TERMINATION_LOG` names another file (created if needed). Writing never fails the command.
"""

from __future__ import annotations

import contextlib
import os

from .client import redact

ENV_PATH = "IM2TXT_TERMINATION_LOG"
DEFAULT_PATH = "/dev/termination-log"
MAX_BYTES = 4096  # the kubelet keeps at most 4096 bytes of a termination message


def write_reason(command: str, reason: str) -> None:
    """Write `<command>: <reason>` (one line, redacted) to the termination log, if there is one."""
    path = os.environ.get(ENV_PATH) or DEFAULT_PATH
    if not os.environ.get(ENV_PATH) and not os.path.exists(path):
        return
    line = redact(f"{command}: {' '.join(reason.split())}")
    data = line.encode("utf-8", "replace")[: MAX_BYTES - 1].decode("utf-8", "ignore") + "\n"
    with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as out:
        out.write(data)
