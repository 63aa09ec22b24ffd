"""`python -m im2txt_storage.output_check`, the operator's first init container on a pvc:// output, run as a non-root
user the way the pod runs it: a root-owned 0755 directory (a volume type that ignores fsGroup) fails with exit 3
and one termination line naming the training's field and the fix; a writable one passes and is left as it was."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from im2txt_storage.output_check import main

UID = 65534  # nobody: the test runs it as a user that does not own the directory

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to run the check as another user")


def _check(folder: Path, termination: Path) -> int:
    """The command's main() in a forked child that became UID (the interpreter may live where UID cannot exec it)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            os.setgroups([])
            os.setgid(UID)
            os.setuid(UID)
            os.environ["IM2TXT_TERMINATION_LOG"] = str(termination)
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child exits right after
            code = main([f"--dir={folder}", "--url=pvc://runs/coco/"])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder UID can reach (pytest's tmp_path lies under a root-only 0700 folder)."""
    folder = Path(tempfile.mkdtemp(prefix="im2txt-output-check-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _termination(folder: Path) -> Path:
    path = folder / "termination-log"
    path.touch()
    path.chmod(0o666)
    return path


def test_a_root_owned_directory_fails_with_the_field_and_the_fix(base: Path) -> None:
    folder = base / "output"
    folder.mkdir(mode=0o755)  # what the kubelet makes of a subPath on hostPath: root:root 0755
    termination = _termination(base)
    assert _check(folder, termination) == 3
    line = termination.read_text()
    assert line.count("\n") == 1 and line.startswith(
        f"output-check: spec.outputPath 'pvc://runs/coco/' is not writable by uid {UID} gid {UID} ")
    assert "is owned by 0:0, mode 0755" in line and f"chown {UID}:{UID}" in line and "delete the failed Job" in line
    assert os.listdir(folder) == []


def test_a_writable_directory_passes_and_stays_empty(base: Path) -> None:
    folder = base / "output"
    folder.mkdir()
    os.chown(folder, UID, UID)
    termination = _termination(base)
    assert _check(folder, termination) == 0
    assert termination.read_text() == "" and os.listdir(folder) == []
