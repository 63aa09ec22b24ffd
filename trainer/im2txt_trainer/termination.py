"""The container's termination message: one bounded `trainer: <reason>` line, written when a command fails, and the
step (and last loss) a training reached when it succeeds, which the operator reads from the pod's status."""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "IM2TXT_TERMINATION_LOG"  # the storage commands read the same variable
DEFAULT_PATH = "/dev/termination-log"  # what Kubernetes mounts into every container (terminationMessagePath)
# Kubernetes keeps 4096 bytes of one container's message; the reason is our own one-line error, so far less does.
MAX_CHARS = 1024


def message(reason: str) -> str:
    """`trainer: <reason>` on one line (newlines and runs of spaces become one space), at most MAX_CHARS."""
    line = "trainer: " + " ".join(reason.split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3] + "..."


def reached(step: int, loss: float | None = None, sec_per_step: float | None = None) -> str:
    """How a training ended well, in the words of its log lines (the operator parses both alike): `reached global
    step N`, with `: loss = L (S sec/step)` of its last step when this run trained one."""
    if loss is None or sec_per_step is None:
        return f"reached global step {step}"
    return f"reached global step {step}: loss = {loss:.4f} ({sec_per_step:.3f} sec/step)"


def path(environ: Mapping[str, str] = os.environ) -> str | None:
    """Where the message goes: env IM2TXT_TERMINATION_LOG (set but empty: nowhere), else /dev/termination-log if
    it exists (a container's; outside one, nothing is created in /dev)."""
    named = environ.get(ENV)
    if named is not None:
        return named or None
    return DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None


def write(reason: str, environ: Mapping[str, str] = os.environ) -> None:
    """Replace the termination message with `reason`; never fails (a failing command must still exit its way)."""
    target = path(environ)
    if target is None:
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(message(reason) + "\n")
    except OSError:
        pass
