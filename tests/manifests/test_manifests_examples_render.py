"""The operator turns every example training into Jobs (and the evaluation Deployment) a Kubernetes 1.32+ API server
accepts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml
from manifests_support import K8S_VERSIONS, ROOT, k8s_validate, load_docs

EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml")
                  if any(d["kind"] == "Im2txtTraining" for d in load_docs(p)))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_operator_renders_valid_jobs(path: Path) -> None:
    from im2txt_operator.cli import render

    out = io.StringIO()
    assert render([str(path)], out=out) == 0
    children = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    assert children and {c["kind"] for c in children} == {"Job", "Deployment"}  # the evaluation is on by default
    for child in children:
        child["metadata"]["ownerReferences"][0]["uid"] = "00000000-0000-0000-0000-000000000000"
        for version in K8S_VERSIONS:
            k8s_validate(child, version)


def test_docs_name_only_real_spec_fields() -> None:
    """docs/deploy.md (the UAI mapping table included) mentions no spec field the CRD lacks."""
    crd = yaml.safe_load((ROOT / "crds" / "im2txt.dev_im2txttrainings.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    text = (ROOT / "docs" / "deploy.md").read_text()
    mentioned = set(re.findall(r"`spec\.([A-Za-z0-9]+)", text))
    assert mentioned, "the mapping table names spec fields"
    assert mentioned <= set(spec), sorted(mentioned - set(spec))
    for uai_field in ("Task name", "Node type", "Key pair", "Code image", "Data input path", "Data output path",
                      "Start command", "Max execute time"):
        assert f"| {uai_field}" in text, uai_field
