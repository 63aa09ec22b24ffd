"""The project's layout: no source root shadows the standard library's `operator` module, and the operator keeps its
rules of one job per module (docs/design.md)."""

import ast
import importlib
import operator
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_folder_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_stdlib_operator_module_is_importable() -> None:
    assert Path(operator.__file__).parent.name.startswith("python3")
    assert importlib.import_module("im2txt_operator").__name__ == "im2txt_operator"


# The operator's layout rules (docs/design.md): small modules with one job each, said in their first line, each with
# a test file named after it, and one module that spells the children's names.
OPERATOR_PACKAGE = ROOT / "operator" / "im2txt_operator"
MAX_OPERATOR_LINES = 300


def operator_modules() -> list[Path]:
    return sorted(p for p in OPERATOR_PACKAGE.rglob("*.py") if not p.name.startswith("__"))


def test_operator_modules_are_found() -> None:
    names = {p.name for p in operator_modules()}
    assert {"names.py", "children.py", "reconcile.py", "wiring.py"} <= names


def test_no_operator_module_is_over_the_line_limit() -> None:
    too_long = {p.name: n for p in operator_modules() if (n := len(p.read_text().splitlines())) > MAX_OPERATOR_LINES}
    assert too_long == {}


def test_every_operator_module_says_its_job_and_has_its_own_test_file() -> None:
    tests = ROOT / "tests" / "operator"
    no_docstring = [p.name for p in operator_modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    no_test = [p.name for p in operator_modules() if not (tests / f"test_{p.stem}.py").exists()]
    assert (no_docstring, no_test) == ([], [])


def test_only_the_names_module_spells_a_child_name() -> None:
    spelled = [p.name for p in operator_modules()
               if p.name != "names.py" and re.search(r"-stage\{|\}-stage|-export\b|-tensorboard\b", p.read_text())]
    assert spelled == []


def test_no_operator_module_rebinds_module_state() -> None:
    """Process state lives in the context kopf's memo carries (controller/context.py), not in module globals."""
    rebinding = [p.name for p in operator_modules()
                 if any(isinstance(node, ast.Global) for node in ast.walk(ast.parse(p.read_text())))]
    assert rebinding == []


def test_docs_design_draws_every_operator_module() -> None:
    drawing = (ROOT / "docs" / "design.md").read_text()
    undrawn = [p.name for p in operator_modules() if not re.search(rf"^ +{re.escape(p.name)} ", drawing, re.M)]
    assert undrawn == []
