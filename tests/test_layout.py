"""The source roots must never shadow the standard library's `operator` module."""

import importlib
import operator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_folder_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_stdlib_operator_module_is_importable() -> None:
    assert Path(operator.__file__).parent.name.startswith("python3")
    assert importlib.import_module("im2txt_operator").__name__ == "im2txt_operator"
