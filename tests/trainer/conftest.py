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

