"""The tools the tests build from Go modules (tools/gitops-health, tools/helm): build once, or fail saying why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def built(build: Path, what: str, timeout: float) -> Path:
    """Run a tool's build.sh (cached across runs; minutes cold) and return the binary it prints. Fails the test,
    naming Go, when it cannot be built: ``what`` says what the tests need the tool for."""
    try:
        done = subprocess.run([str(build)], capture_output=True, text=True, timeout=timeout)
    except OSError as e:
        pytest.fail(f"cannot run {build}: {e}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{build.relative_to(ROOT)} failed (it needs Go 1.26 on PATH to build {what}):\n"
                    f"{done.stderr[-3000:]}", pytrace=False)
    return Path(done.stdout.strip())
