from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CRD_PATH = ROOT / "crds" / "im2txt.dev_im2txttrainings.yaml"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((HERE / "data" / name).read_text())


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())
