"""The CRD: examples validate; the corpus (tests/crd_corpus.py) of bad resources is rejected, each naming the
offending field as the API server does, and its good cases are accepted."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_corpus import BAD, GOOD, GOOD_CASES, OPERATOR_ONLY, STATUS_BAD, _with
from crd_validate import apply_defaults, validate, version_schema
from operator_support import CRD_PATH, HERE, ROOT

from im2txt_operator import field_rules
from im2txt_storage.paths import PATH_PATTERN

EXAMPLES = sorted((HERE / "data").glob("training-*.yaml"))


def test_identity(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "im2txt.dev", "Namespaced", "Im2txtTraining", "im2txttrainings")
    assert spec["names"]["shortNames"] == ["i2t"] and spec["names"]["categories"] == ["im2txt"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Stage", "Phase", "Step", "Uploaded", "Loss", "Progress", "ETA", "Age", "Nodes", "GPUs", "PPL", "Message"]
    # The layout, the validation perplexity and the Ready condition's message only with -o wide.
    assert [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")] == ["Nodes", "GPUs", "PPL",
                                                                                              "Message"]


def _walk(node: dict[str, Any], path: str) -> list[str]:
    missing: list[str] = []
    for key, sub in (node.get("properties") or {}).items():
        # The root's metadata is exempt: the API server refuses a CRD whose metadata schema has anything but
        # `type: object` (and restrictions on name/generateName), a description included ("must not specify
        # anything other than name and generateName").
        if not sub.get("description") and f"{path}.{key}" != ".metadata":
            missing.append(f"{path}.{key}")
        missing += _walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        missing += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += _walk(node["additionalProperties"], f"{path}{{}}")
    return missing


def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    schema = version_schema(crd, "v1alpha1")
    assert schema["description"]
    assert _walk(schema, "") == []


def test_metadata_schema_is_what_the_api_server_allows(crd: dict[str, Any]) -> None:
    metadata = version_schema(crd, "v1alpha1")["properties"]["metadata"]
    assert set(metadata) - {"properties"} == {"type"} and metadata["type"] == "object"
    assert set(metadata.get("properties") or {}) <= {"name", "generateName"}


def _nodes(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in (node.get("properties") or {}).items():
            out += _nodes(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out += _nodes(node[key], f"{path}[{key}]")
    return out


def test_every_cel_rule_touches_only_bounded_values(crd: dict[str, Any]) -> None:
    """The API server estimates each rule's worst-case cost from maxItems/maxProperties/maxLength; unbounded
    lists, maps and strings make a CRD with rules over them fail to install."""
    for path, node in _nodes(version_schema(crd, "v1alpha1")):
        for rule in node.get("x-kubernetes-validations") or []:
            assert rule.get("message"), (path, rule)
            if path in ("", ".spec"):
                continue  # rules on single scalar fields
            kind = node.get("type")
            if kind == "array":
                assert "maxItems" in node, path
            elif kind == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, path
            elif kind == "string":
                assert "maxLength" in node, path
            if node.get("x-kubernetes-int-or-string"):
                raise AssertionError(f"{path}: CEL on an int-or-string value is estimated at 3 MiB a value")


def test_crd_patterns_are_the_operators(crd: dict[str, Any]) -> None:
    """spec.py and im2txt_storage.paths check with the same patterns as the schema (the operator mirrors it)."""
    props = version_schema(crd, "v1alpha1")["properties"]["spec"]["properties"]
    assert props["dataPath"]["pattern"] == props["outputPath"]["pattern"] == PATH_PATTERN
    quantity = field_rules.QUANTITY_PATTERN
    assert props["dataCacheSize"]["pattern"] == quantity
    for kind in ("requests", "limits"):
        node = props["resources"]["properties"][kind]
        assert node["additionalProperties"]["pattern"] == quantity
        assert node["maxProperties"] == field_rules.MAX_RESOURCES
        names = node["x-kubernetes-validations"][0]["rule"]
        assert f"'{field_rules.RESOURCE_NAME_PATTERN}'" in names and f"'{field_rules.PREFIX_244_PATTERN}'" in names
    selector = props["nodeSelector"]
    assert selector["maxProperties"] == field_rules.MAX_NODE_SELECTOR
    assert selector["additionalProperties"]["pattern"] == field_rules.LABEL_VALUE_PATTERN
    keys = selector["x-kubernetes-validations"][0]["rule"]
    assert f"'{field_rules.QUALIFIED_NAME_PATTERN}'" in keys and f"'{field_rules.PREFIX_253_PATTERN}'" in keys
    toleration = props["tolerations"]["items"]["properties"]
    assert props["tolerations"]["maxItems"] == field_rules.MAX_TOLERATIONS
    assert toleration["key"]["pattern"] == "^(" + field_rules.QUALIFIED_NAME_PATTERN[1:-1] + ")?$"
    assert field_rules.PREFIX_253_PATTERN in toleration["key"]["x-kubernetes-validations"][0]["rule"]
    assert toleration["value"]["pattern"] == field_rules.LABEL_VALUE_PATTERN
    args = props["extraArgs"]
    assert args["maxItems"] == field_rules.MAX_EXTRA_ARGS and args["items"]["pattern"] == field_rules.FLAG_PATTERN
    assert f"'{field_rules.RESERVED_FLAG_PATTERN}'" in args["items"]["x-kubernetes-validations"][0]["rule"]


def test_steps_semantics_are_documented(crd: dict[str, Any]) -> None:
    spec = version_schema(crd, "v1alpha1")["properties"]["spec"]
    assert "absolute global step" in spec["description"]
    assert "absolute global step" in spec["properties"]["numberOfSteps"]["description"]
    assert "--train_inception=True" in spec["properties"]["stage2NumberOfSteps"]["description"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(crd: dict[str, Any], path: Path) -> None:
    assert validate(crd, yaml.safe_load(path.read_text())) == []


def test_project_examples_validate(crd: dict[str, Any]) -> None:
    found = [p for p in (ROOT / "examples").rglob("*.yaml")
             if "Im2txtTraining" in p.read_text() and "kind: Kustomization" not in p.read_text()]
    for path in found:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Im2txtTraining":
                assert validate(crd, doc) == [], path


def test_defaults(crd: dict[str, Any]) -> None:
    spec = apply_defaults(version_schema(crd, "v1alpha1"), copy.deepcopy(GOOD))["spec"]
    assert (spec["stage"], spec["numberOfSteps"], spec["stage2NumberOfSteps"], spec["autoAdvance"]) == (
        1, 1000000, 3000000, True)
    assert spec["ufile"] == {"uploadSuffix": ".cn-bj.ufileos.com", "downloadSuffix": ".cn-bj.ufileos.com"}


@pytest.mark.parametrize(("obj", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_resources_are_rejected_naming_the_field(crd: dict[str, Any], obj: dict[str, Any], field: str) -> None:
    errors = validate(crd, obj)
    assert errors, "accepted"
    assert any(e.startswith(f"{field}: ") for e in errors), errors


def test_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 60 and len(GOOD_CASES) >= 10 and all(s in BAD for s in STATUS_BAD)
    assert len({b[0] for b in BAD}) == len(BAD) and len({g[0] for g in GOOD_CASES}) == len(GOOD_CASES)
    for _, obj, _ in BAD:
        assert obj["apiVersion"] == "im2txt.dev/v1alpha1" and obj["kind"] == "Im2txtTraining"
        assert obj["metadata"]["name"]


@pytest.mark.parametrize("obj", [g[1] for g in GOOD_CASES], ids=[g[0] for g in GOOD_CASES])
def test_good_cases_are_accepted(crd: dict[str, Any], obj: dict[str, Any]) -> None:
    assert validate(crd, obj) == []


@pytest.mark.parametrize("obj", [o[1] for o in OPERATOR_ONLY], ids=[o[0] for o in OPERATOR_ONLY])
def test_operator_only_cases_are_accepted_by_the_schema(crd: dict[str, Any], obj: dict[str, Any]) -> None:
    assert validate(crd, obj) == []


def test_errors_name_required_and_unknown_fields_as_the_api_server() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert "spec.dataPath: Required value" in validate(crd, _with(drop=("dataPath",)))
    assert 'spec.numberOfStep: unknown field "spec.numberOfStep"' in validate(crd, _with({"numberOfStep": 1}))


def test_crd_file_is_the_one_in_the_repo() -> None:
    assert CRD_PATH.exists()
