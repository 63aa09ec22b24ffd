"""spec.parse_spec: defaults, and every error names its field and what is expected."""

from __future__ import annotations

from typing import Any

import pytest
from operator_support import load

from im2txt_operator.paths import PvcPath, UFilePath, parse_path
from im2txt_operator.spec import DEFAULTS, Settings, SpecError, parse_spec

BASE: dict[str, Any] = {"dataPath": "pvc://data/coco", "outputPath": "pvc://out/model/"}


def test_defaults_match_the_contract() -> None:
    s = parse_spec(BASE)
    assert (s.stage, s.number_of_steps, s.stage2_number_of_steps, s.auto_advance) == (1, 1_000_000, 3_000_000, True)
    assert (s.input_file_pattern, s.inception_checkpoint_file) == ("train-?????-of-00256", "inception_v3.ckpt")
    assert (s.gpus, s.backoff_limit, s.checkpoint_interval_seconds, s.suspend) == (1, 3, 600, False)
    assert (s.ufile.upload_suffix, s.ufile.download_suffix) == (".cn-bj.ufileos.com", ".cn-bj.ufileos.com")
    assert s.data_cache_size == "100Gi" and s.extra_args == () and s.max_run_seconds is None
    assert s.data_path == PvcPath("data", "coco") and s.output_path == PvcPath("out", "model")
    assert s.stages() == (1, 2) and s.target(1) == 1_000_000 and s.target(2) == 3_000_000


def test_defaults_match_the_crd_schema(crd: dict[str, Any]) -> None:
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for key, value in DEFAULTS.items():
        assert props[key]["default"] == value, key
    assert props["ufile"]["properties"]["uploadSuffix"]["default"] == Settings(
        data_path=parse_path("pvc://a/"), output_path=parse_path("pvc://a/")).ufile.upload_suffix


def test_full_example_parses() -> None:
    s = parse_spec(load("training-full.yaml")["spec"])
    assert s.data_path == UFilePath("im2txt-data", "mscoco/")
    assert s.output_path == PvcPath("im2txt-runs", "coco-full")
    assert s.credentials_secret == "ufile-keys" and s.uses_ufile
    assert s.queue_name == "gpu-queue" and s.max_run_seconds == 1209600
    assert s.extra_args == ("--log_every_n_steps=100",)
    assert s.resources == {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "48Gi"}}


@pytest.mark.parametrize(("spec", "stages"), [
    ({}, (1, 2)), ({"autoAdvance": False}, (1,)), ({"stage": 2}, (2,)), ({"stage": 2, "autoAdvance": False}, (2,)),
])
def test_stages(spec: dict[str, Any], stages: tuple[int, ...]) -> None:
    assert parse_spec({**BASE, **spec}).stages() == stages


@pytest.mark.parametrize(("path", "parsed"), [
    ("ufile://bucket/", UFilePath("bucket", "")),
    ("ufile://my-bucket/a/b/", UFilePath("my-bucket", "a/b/")),
    ("pvc://claim", PvcPath("claim", "")),
    ("pvc://claim/", PvcPath("claim", "")),
    ("pvc://claim/sub/path/", PvcPath("claim", "sub/path")),
])
def test_paths(path: str, parsed: object) -> None:
    assert parse_path(path) == parsed


# (spec change, field named in the error, a fragment of what is expected)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"dataPath": "s3://bucket/x/"}, "spec.dataPath", "expected ufile://<bucket>/<prefix>/ or pvc://"),
    ({"dataPath": "ufile://bucket/prefix"}, "spec.dataPath", "must end with '/'"),
    ({"outputPath": "pvc://Bad_Claim/x"}, "spec.outputPath", "expected ufile://"),
    ({"dataPath": "ufile://my.bucket/x/"}, "spec.dataPath", "bucket name is 3-63 lowercase letters"),
    ({"outputPath": "ufile://ab/x/"}, "spec.outputPath", "bucket name is 3-63 lowercase letters"),
    ({"outputPath": "ufile://bucket/why?/"}, "spec.outputPath", "may not hold '%', '?' or '#'"),
    ({"outputPath": 3}, "spec.outputPath", "got 3"),
    ({"stage": 3}, "spec.stage", "expected 1 or 2"),
    ({"stage": True}, "spec.stage", "expected 1 or 2"),
    ({"numberOfSteps": 0}, "spec.numberOfSteps", "between 1 and"),
    ({"numberOfSteps": "100"}, "spec.numberOfSteps", "expected an integer"),
    ({"numberOfSteps": 3_000_000}, "spec.stage2NumberOfSteps", "greater than spec.numberOfSteps"),
    ({"autoAdvance": "yes"}, "spec.autoAdvance", "expected true or false"),
    ({"dataPath": "ufile://bucket/p/"}, "spec.credentialsSecret", "required when spec.dataPath or spec.outputPath"),
    ({"credentialsSecret": "Bad_Name"}, "spec.credentialsSecret", "a Secret name"),
    ({"inputFilePattern": "sub/train-*"}, "spec.inputFilePattern", "without '/'"),
    ({"inceptionCheckpointFile": ""}, "spec.inceptionCheckpointFile", "a file name"),
    ({"gpus": 17}, "spec.gpus", "between 0 and 16"),
    ({"backoffLimit": -1}, "spec.backoffLimit", "between 0 and 100"),
    ({"checkpointIntervalSeconds": 5}, "spec.checkpointIntervalSeconds", "between 10 and 86400"),
    ({"maxRunSeconds": 0}, "spec.maxRunSeconds", ">= 1"),
    ({"suspend": "no"}, "spec.suspend", "true or false"),
    ({"queueName": "bad queue"}, "spec.queueName", "a label value"),
    ({"dataCacheSize": "lots"}, "spec.dataCacheSize", "a quantity"),
    ({"image": "has space"}, "spec.image", "without spaces"),
    ({"extraArgs": "--a=1"}, "spec.extraArgs", "a list of --flag=value"),
    ({"extraArgs": ["-x"]}, "spec.extraArgs[0]", "--flag or --flag=value"),
    ({"extraArgs": ["--ok=1", "--train_dir=/tmp"]}, "spec.extraArgs[1]", "--train_dir is set by the operator"),
    ({"extraArgs": ["--number_of_steps"]}, "spec.extraArgs[0]", "--number_of_steps is set by the operator"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests.cpu", "a resource quantity"),
    ({"resources": {"claims": {}}}, "spec.resources.claims", "expected requests or limits"),
    ({"nodeSelector": {"a": 1}}, "spec.nodeSelector", "string values"),
    ({"tolerations": [{"operator": "Maybe"}]}, "spec.tolerations[0].operator", "Exists or Equal"),
    ({"tolerations": [{"effect": "Evict"}]}, "spec.tolerations[0].effect", "NoSchedule"),
    ({"ufile": {"uploadSuffix": "cn-bj.ufileos.com"}}, "spec.ufile.uploadSuffix", "a host suffix"),
]


@pytest.mark.parametrize(("change", "field", "expected"), BAD, ids=[b[1] + ":" + str(i) for i, b in enumerate(BAD)])
def test_errors_name_the_field(change: dict[str, Any], field: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, **change})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert expected in str(info.value)


@pytest.mark.parametrize("missing", ["dataPath", "outputPath"])
def test_required_paths(missing: str) -> None:
    spec = dict(BASE)
    del spec[missing]
    with pytest.raises(SpecError, match=rf"^spec\.{missing}: required"):
        parse_spec(spec)


def test_spec_must_be_an_object() -> None:
    with pytest.raises(SpecError, match=r"^spec: expected an object"):
        parse_spec(None)


def test_integer_data_cache_size_is_a_quantity() -> None:
    assert parse_spec({**BASE, "dataCacheSize": 1000}).data_cache_size == "1000"
