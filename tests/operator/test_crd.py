"""The CRD: examples validate; a corpus of bad resources is rejected, each naming the offending field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_validate import apply_defaults, validate, version_schema
from operator_support import CRD_PATH, HERE, ROOT

EXAMPLES = sorted((HERE / "data").glob("training-*.yaml"))
GOOD: dict[str, Any] = {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                        "metadata": {"name": "coco"},
                        "spec": {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                                 "credentialsSecret": "ufile-keys"}}


def test_identity(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "im2txt.dev", "Namespaced", "Im2txtTraining", "im2txttrainings")
    assert spec["names"]["shortNames"] == ["i2t"] and spec["names"]["categories"] == ["im2txt"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Stage", "Phase", "Step", "Progress", "ETA",
                                                                        "Age"]


def _walk(node: dict[str, Any], path: str) -> list[str]:
    missing: list[str] = []
    for key, sub in (node.get("properties") or {}).items():
        if not sub.get("description"):
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


def _with(spec: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **top: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    obj["spec"].update(spec or {})
    for key in drop:
        del obj["spec"][key]
    obj.update(top)
    return obj


# (id, resource, field that must be named)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("missing dataPath", _with(drop=("dataPath",)), "spec: 'dataPath' is a required property"),
    ("missing outputPath", _with(drop=("outputPath",)), "spec: 'outputPath' is a required property"),
    ("s3 path", _with({"dataPath": "s3://bucket/x/"}), "spec.dataPath"),
    ("ufile prefix without slash", _with({"outputPath": "ufile://bucket/x"}), "spec.outputPath"),
    ("ufile bucket with a dot", _with({"dataPath": "ufile://my.bucket/x/"}), "spec.dataPath"),
    ("ufile bucket too short", _with({"outputPath": "ufile://ab/x/"}), "spec.outputPath"),
    ("ufile key with a percent sign", _with({"outputPath": "ufile://bucket/50%/"}), "spec.outputPath"),
    ("pvc claim upper case", _with({"dataPath": "pvc://Claim/x"}), "spec.dataPath"),
    ("stage 3", _with({"stage": 3}), "spec.stage"),
    ("steps zero", _with({"numberOfSteps": 0}), "spec.numberOfSteps"),
    ("steps as string", _with({"numberOfSteps": "1000"}), "spec.numberOfSteps"),
    ("gpus 17", _with({"gpus": 17}), "spec.gpus"),
    ("backoffLimit negative", _with({"backoffLimit": -1}), "spec.backoffLimit"),
    ("checkpoint interval too short", _with({"checkpointIntervalSeconds": 1}), "spec.checkpointIntervalSeconds"),
    ("maxRunSeconds zero", _with({"maxRunSeconds": 0}), "spec.maxRunSeconds"),
    ("autoAdvance string", _with({"autoAdvance": "yes"}), "spec.autoAdvance"),
    ("secret name invalid", _with({"credentialsSecret": "Keys_1"}), "spec.credentialsSecret"),
    ("pattern with a slash", _with({"inputFilePattern": "a/train-*"}), "spec.inputFilePattern"),
    ("suffix without dot", _with({"ufile": {"uploadSuffix": "cn-bj.ufileos.com"}}), "spec.ufile.uploadSuffix"),
    ("queue name with space", _with({"queueName": "gpu queue"}), "spec.queueName"),
    ("cache size not a quantity", _with({"dataCacheSize": "big"}), "spec.dataCacheSize"),
    ("toleration operator", _with({"tolerations": [{"operator": "Maybe"}]}), "spec.tolerations[0].operator"),
    ("extra arg without dashes", _with({"extraArgs": ["image_size=75"]}), "spec.extraArgs[0]"),
    ("unknown field", _with({"numberOfStep": 10}), "spec: Additional properties are not allowed ('numberOfStep'"),
    ("status phase unknown", _with(status={"phase": "Done"}), "status.phase"),
    # CEL rules
    ("stage 2 target not above stage 1", _with({"numberOfSteps": 3000000}), "spec.stage2NumberOfSteps"),
    ("stage 2 target equal after defaults", _with({"stage2NumberOfSteps": 1000000}), "spec.stage2NumberOfSteps"),
    ("ufile without secret", _with(drop=("credentialsSecret",)), "spec.credentialsSecret"),
    ("ufile output only without secret", _with({"dataPath": "pvc://data/"}, drop=("credentialsSecret",)),
     "spec.credentialsSecret"),
    ("extraArgs overrides train_dir", _with({"extraArgs": ["--train_dir=/tmp"]}), "spec.extraArgs"),
    ("extraArgs overrides train_inception", _with({"extraArgs": ["--x=1", "--train_inception"]}), "spec.extraArgs"),
    ("name too long for the Job names", _with(metadata={"name": "n" * 57}), "metadata.name"),
]


@pytest.mark.parametrize(("obj", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_resources_are_rejected_naming_the_field(crd: dict[str, Any], obj: dict[str, Any], field: str) -> None:
    errors = validate(crd, obj)
    assert errors, "accepted"
    prefix = field if ": " in field else f"{field}: "
    assert any(e.startswith(prefix) or e.startswith(f"<root>: {field}") for e in errors), errors


def test_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 20


def test_cel_rules_accept_the_good_cases(crd: dict[str, Any]) -> None:
    assert validate(crd, _with({"dataPath": "pvc://d/", "outputPath": "pvc://o/"}, drop=("credentialsSecret",))) == []
    assert validate(crd, _with({"extraArgs": ["--train_dir_suffix=x", "--log_every_n_steps=10"]})) == []
    assert validate(crd, _with({"numberOfSteps": 10, "stage2NumberOfSteps": 11})) == []


def test_crd_file_is_the_one_in_the_repo() -> None:
    assert CRD_PATH.exists()
