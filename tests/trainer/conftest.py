"""Shared fixtures: one tiny synthetic dataset (real record format, slim-named Inception file) per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from im2txt_trainer import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    info = synthetic.write_dataset(str(out), images=24, image_size=80, seed=3)
    return out, info



@pytest.fixture(autouse=True)
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own termination message file (env IM2TXT_TERMINATION_LOG, inherited by subprocesses), so that
    a failing command under test never writes a container's /dev/termination-log."""
    path = tmp_path / "termination-log"
    monkeypatch.setenv("IM2TXT_TERMINATION_LOG", str(path))
    return path
