"""The offline CRD validator (tools/crd_validate.py) rejects what the API server would reject."""

from __future__ import annotations

import copy
from typing import Any

import crd_validate
import pytest
from manifests_support import ROOT, load_docs

GOOD: dict[str, Any] = {
    "apiVersion": "im2txt.dev/v1alpha1",
    "kind": "Im2txtTraining",
    "metadata": {"name": "coco"},
    "spec": {
        "dataPath": "ufile://my-bucket/uai/im2txt/data/",
        "outputPath": "ufile://my-bucket/uai/im2txt/output/",
        "credentialsSecret": "ufile-keys",
    },
}


def with_spec(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    for k, v in changes.items():
        if v is None:
            obj["spec"].pop(k, None)
        else:
            obj["spec"][k] = v
    return obj


def test_minimal_training_is_accepted_and_defaulted(crd: dict[str, Any]) -> None:
    assert crd_validate.validate(crd, GOOD) == []
    schema = crd_validate.version_schema(crd, "v1alpha1")
    spec = crd_validate.apply_defaults(schema, GOOD)["spec"]
    assert spec["stage"] == 1 and spec["numberOfSteps"] == 1000000 and spec["stage2NumberOfSteps"] == 3000000
    assert spec["ufile"] == {"uploadSuffix": ".cn-bj.ufileos.com", "downloadSuffix": ".cn-bj.ufileos.com"}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"dataPath": None}, "spec.dataPath: Required value"),
        ({"dataPath": "s3://bucket/data/"}, "spec.dataPath: "),
        ({"dataPath": "pvc://im2txt/../../etc/"}, "spec.dataPath: "),
        ({"stage": 3}, "spec.stage: "),
        ({"gpus": -1}, "spec.gpus: "),
        ({"numberOfSteps": "many"}, "spec.numberOfSteps: "),
        ({"numberOfSteps": 5000000}, "spec.stage2NumberOfSteps: spec.stage2NumberOfSteps must be greater"),
        ({"credentialsSecret": None}, "spec.credentialsSecret: spec.credentialsSecret is required"),
        ({"extraArgs": ["--train_dir=/tmp"]}, "spec.extraArgs[0]: spec.extraArgs: a flag may not be"),
        ({"extraArgs": ["--train_d=/tmp"]}, "spec.extraArgs[0]: spec.extraArgs: a flag may not be"),
        ({"extraArgs": ["image_size=75"]}, "spec.extraArgs[0]: "),
        ({"numberOfStep": 10}, 'spec.numberOfStep: unknown field "spec.numberOfStep"'),
        ({"ufile": {"uploadSufix": ".x.com"}}, 'spec.ufile.uploadSufix: unknown field "spec.ufile.uploadSufix"'),
        ({"dataCacheSize": "lots"}, "spec.dataCacheSize: "),
        ({"nodeSelector": {"gpu type": "a100"}}, "spec.nodeSelector: spec.nodeSelector: every key must be a label"),
        ({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]},
         "spec.tolerations[0].value: spec.tolerations[].value must be empty when operator is Exists"),
        ({"resources": {"limits": {"memory": "1K"}}}, "spec.resources.limits.memory: "),
    ],
)
def test_bad_training_is_rejected_naming_the_field(crd: dict[str, Any], changes: dict[str, Any], fragment: str) -> None:
    errors = crd_validate.validate(crd, with_spec(**changes))
    assert errors, changes
    assert any(e.startswith(fragment) for e in errors), errors


def test_pvc_paths_need_no_secret(crd: dict[str, Any]) -> None:
    obj = with_spec(dataPath="pvc://im2txt/data", outputPath="pvc://im2txt/output/", credentialsSecret=None)
    assert crd_validate.validate(crd, obj) == []


def test_int_or_string_quantities(crd: dict[str, Any]) -> None:
    obj = with_spec(resources={"requests": {"cpu": 4, "memory": "16Gi"}}, dataCacheSize=100)
    assert crd_validate.validate(crd, obj) == []
    assert crd_validate.validate(crd, with_spec(resources={"requests": {"cpu": [4]}}))


def test_wrong_kind_is_refused(crd: dict[str, Any]) -> None:
    assert crd_validate.validate(crd, {**GOOD, "kind": "Job"})


def test_demo_training_is_small_and_uses_the_demo_bucket(crd: dict[str, Any]) -> None:
    (demo,) = load_docs(ROOT / "examples" / "training.yaml")
    assert crd_validate.validate(crd, demo) == []
    spec = demo["spec"]
    assert spec["dataPath"] == "ufile://demo-bucket/uai/im2txt/data/"
    assert spec["outputPath"] == "ufile://demo-bucket/uai/im2txt/output/"
    assert spec["numberOfSteps"] < spec["stage2NumberOfSteps"] <= 1000


def test_ufile_example_is_the_uai_guide_layout(crd: dict[str, Any]) -> None:
    (training,) = load_docs(ROOT / "examples" / "training-ufile.yaml")
    spec = training["spec"]
    bucket = spec["dataPath"].removeprefix("ufile://").split("/")[0]
    assert spec["dataPath"] == f"ufile://{bucket}/uai/im2txt/data/"
    assert spec["outputPath"] == f"ufile://{bucket}/uai/im2txt/output/"
    (secret,) = load_docs(ROOT / "examples" / "secret.yaml")
    assert spec["credentialsSecret"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {"publicKey", "privateKey"}
    assert all(v.startswith("REPLACE-") for v in secret["stringData"].values()), "placeholders only"


def test_pvc_example_claim_exists(crd: dict[str, Any]) -> None:
    docs = load_docs(ROOT / "examples" / "training-pvc.yaml")
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    (training,) = [d for d in docs if d["kind"] == "Im2txtTraining"]
    for path in (training["spec"]["dataPath"], training["spec"]["outputPath"]):
        assert path.removeprefix("pvc://").split("/")[0] in claims
    assert "credentialsSecret" not in training["spec"]


def test_object_wide_rules_run_on_the_whole_resource(crd: dict[str, Any]) -> None:
    too_long = {**copy.deepcopy(GOOD), "metadata": {"name": "x" * 52}}
    errors = crd_validate.validate(crd, too_long)
    assert any("metadata.name must be at most 51" in e for e in errors), errors
    assert crd_validate.validate(crd, {**copy.deepcopy(GOOD), "metadata": {"name": "x" * 51}}) == []
