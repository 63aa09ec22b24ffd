"""Shared fixtures: one tiny synthetic dataset (real record format, slim-named Inception file) per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--batch_size=4", "--image_size=75", "--vocab_size=12", "--embedding_size=16", "--num_lstm_units=16"]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from im2txt_trainer import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    info = synthetic.write_dataset(str(out), images=24, image_size=80, seed=3)
    return out, info


def run_train(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """train.py as the Job runs it (a subprocess of /data/train.py's stand-in)."""
    return subprocess.run([sys.executable, str(ROOT / "trainer" / "train.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
