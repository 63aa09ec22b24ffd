"""Generated files match their sources, so docs and copies cannot drift."""

from __future__ import annotations

import crd_reference
import yaml
from manifests_support import CRD_PATH, ROOT


def test_reference_md_is_up_to_date() -> None:
    expected = crd_reference.render(yaml.safe_load(CRD_PATH.read_text()))
    assert (ROOT / "docs" / "reference.md").read_text() == expected, "docs/reference.md is stale: make manifests"


def test_readme_reference_is_up_to_date() -> None:
    expected = crd_reference.render(yaml.safe_load(CRD_PATH.read_text()))
    readme = (ROOT / "README.md").read_text()
    assert readme == crd_reference.readme_with(readme, expected), "README.md's reference is stale: make manifests"
    assert "| `spec.dataPath` |" in readme.split(crd_reference.BEGIN, 1)[1]


def test_reference_lists_every_spec_field_with_default_and_constraints() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    text = crd_reference.render(crd)
    lines = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if line.startswith("| `")}
    for name, node in spec["properties"].items():
        line = lines[f"spec.{name}"]
        if "default" in node:
            assert crd_reference._code(node["default"]) in line, name
    assert "required" in lines["spec.dataPath"] and "required" in lines["spec.outputPath"]
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for rule in spec["x-kubernetes-validations"] + root.get("x-kubernetes-validations", []):  # object-wide rules
        assert f"- {crd_reference._text(rule['message'])}" in text
    assert "one of `1`, `2`" in lines["spec.stage"]


def test_reference_escapes_table_breakers() -> None:
    row = next(crd_reference.rows({"type": "string", "pattern": "a|b", "description": "x | <y>"}, "spec.f"))
    assert row == ("`spec.f`", "string", "", "pattern `a\\|b`", "x \\| &lt;y&gt;")
