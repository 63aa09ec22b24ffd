"""spec.parse_spec: defaults, and every error names its field and what is expected."""

from __future__ import annotations

from typing import Any

import pytest
from crd_corpus import BAD as CORPUS_BAD
from crd_corpus import GOOD, GOOD_CASES, OPERATOR_ONLY
from crd_validate import apply_defaults, version_schema
from operator_support import load

from im2txt_operator.spec import DEFAULTS, Settings, SpecError, parse_spec
from im2txt_storage.paths import PvcPath, UFilePath, parse_path

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


# (spec change, field named in the error, a fragment of what is expected)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"dataPath": "s3://bucket/x/"}, "spec.dataPath", "expected ufile://<bucket>/<prefix>/ or pvc://"),
    ({"dataPath": "ufile://bucket/prefix"}, "spec.dataPath", "must end with '/'"),
    ({"dataPath": "pvc://im2txt/../../etc/"}, "spec.dataPath", "empty, '.' or '..' parts"),
    ({"outputPath": "ufile://bucket/a/../"}, "spec.outputPath", "empty, '.' or '..' parts"),
    ({"outputPath": "pvc://out/a\\b"}, "spec.outputPath", "spaces, control characters"),
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
    ({"dataCacheSize": "1K"}, "spec.dataCacheSize", "a quantity"),
    ({"image": "has space"}, "spec.image", "without spaces"),
    ({"extraArgs": "--a=1"}, "spec.extraArgs", "a list of --flag=value"),
    ({"extraArgs": ["-x"]}, "spec.extraArgs[0]", "--flag or --flag=value"),
    ({"extraArgs": ["--ok=1", "--train_dir=/tmp"]}, "spec.extraArgs[1]", "--train_dir is set by the operator"),
    ({"extraArgs": ["--number_of_steps"]}, "spec.extraArgs[0]", "--number_of_steps is set by the operator"),
    ({"extraArgs": ["--train_d=/x"]}, "spec.extraArgs[0]", "--train_d abbreviates --train_dir"),
    ({"extraArgs": ["--ok", "--number_of_st=5"]}, "spec.extraArgs[1]", "--number_of_st abbreviates --number_of_steps"),
    ({"extraArgs": ["--inc"]}, "spec.extraArgs[0]", "--inc abbreviates --inception_checkpoint_file"),
    ({"extraArgs": ["--x=1"] * 65}, "spec.extraArgs", "at most 64"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests.cpu", "a resource quantity"),
    ({"resources": {"claims": {}}}, "spec.resources.claims", "expected requests or limits"),
    ({"resources": {"limits": {"gpu": 1}}}, "spec.resources.limits", "'gpu' is not a container resource name"),
    ({"resources": {"limits": {"nvidia.com/gpu": 1}}}, "spec.resources.limits", "comes from spec.gpus"),
    ({"resources": {"requests": {"example.com/x": 1}}}, "spec.resources.requests", "go in limits only"),
    ({"resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}}, "spec.resources.requests.cpu",
     "must be at most spec.resources.limits.cpu ('1500m'), got 2"),
    ({"resources": {"limits": {"example.com/x": "1.5"}}}, "spec.resources.limits.example.com/x", "whole number"),
    ({"nodeSelector": {"a": 1}}, "spec.nodeSelector.a", "a label value"),
    ({"nodeSelector": {"a b": "x"}}, "spec.nodeSelector", "every key must be a label name"),
    ({"nodeSelector": ["a"]}, "spec.nodeSelector", "expected a map"),
    ({"tolerations": [{"operator": "Maybe"}]}, "spec.tolerations[0].operator", "Exists or Equal"),
    ({"tolerations": [{"operator": "Exists", "effect": "Evict"}]}, "spec.tolerations[0].effect", "NoSchedule"),
    ({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "spec.tolerations[0].value",
     "must be empty when operator is Exists"),
    ({"tolerations": [{"value": "v"}]}, "spec.tolerations[0].operator", "must be Exists when key is empty"),
    ({"tolerations": [{"key": "k", "tolerationSeconds": 5}]}, "spec.tolerations[0].tolerationSeconds",
     "only allowed with effect NoExecute"),
    ({"tolerations": [{"key": "k", "effect": "NoExecute", "tolerationSeconds": "5"}]},
     "spec.tolerations[0].tolerationSeconds", "expected an integer"),
    ({"tolerations": [{"key": "a/b/c", "operator": "Exists"}]}, "spec.tolerations[0].key", "a label name"),
    ({"tolerations": [{"key": "k", "value": "-v"}]}, "spec.tolerations[0].value", "a label value"),
    ({"ufile": {"uploadSufix": ".x.com"}}, "spec.ufile.uploadSufix", "unknown field"),
    ({"numberOfStep": 5}, "spec.numberOfStep", "unknown field"),
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


def test_integer_limits_and_quantities() -> None:
    s = parse_spec({**BASE, "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                          "limits": {"cpu": 1, "memory": "1073741824", "example.com/x": "2"}}})
    assert s.resources["limits"]["cpu"] == 1


# -- the corpus the CRD, the offline validator and a real API server are checked against ------------------
def _spec(crd: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """The spec as the operator receives it: defaulted by the API server."""
    return apply_defaults(version_schema(crd, "v1alpha1"), obj)["spec"]


SPEC_BAD = [b for b in CORPUS_BAD if b[2].startswith("spec.")]


@pytest.mark.parametrize(("obj", "field"), [b[1:] for b in SPEC_BAD], ids=[b[0] for b in SPEC_BAD])
def test_operator_refuses_what_the_api_server_refuses(crd: dict[str, Any], obj: dict[str, Any], field: str) -> None:
    """The operator (and render, offline) never acts on a spec the API server would refuse, naming its field."""
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(crd, obj))
    assert info.value.field == field, str(info.value)


@pytest.mark.parametrize("obj", [g[1] for g in GOOD_CASES], ids=[g[0] for g in GOOD_CASES])
def test_operator_accepts_what_the_api_server_accepts(crd: dict[str, Any], obj: dict[str, Any]) -> None:
    parse_spec(_spec(crd, obj))


@pytest.mark.parametrize(("obj", "field"), [o[1:] for o in OPERATOR_ONLY], ids=[o[0] for o in OPERATOR_ONLY])
def test_operator_refuses_what_only_the_pod_api_checks(crd: dict[str, Any], obj: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(crd, obj))
    assert info.value.field == field, str(info.value)


def test_ufile_hosts_are_the_admins_to_allow() -> None:
    spec = {**GOOD["spec"], "ufile": {"uploadSuffix": ".internal-cn-bj.ufileos.com",
                                      "downloadSuffix": ".ufile.ucloud.cn"}}
    assert parse_spec(spec).ufile.upload_suffix == ".internal-cn-bj.ufileos.com"  # UCloud's own: allowed by default
    lab = {**GOOD["spec"], "ufile": {"uploadSuffix": ".89.0.1", "downloadSuffix": ".89.0.1"}}
    with pytest.raises(SpecError) as e:
        parse_spec(lab)
    assert e.value.field == "spec.ufile.uploadSuffix"
    assert "'.89.0.1' is not in a UFile domain this cluster allows (.ufileos.com, .ufile.ucloud.cn, " \
           ".ufile.ucloud.com.cn)" in str(e.value) and "--ufile-domains" in str(e.value)
    assert parse_spec(lab, (".89.0.1",)).ufile.download_suffix == ".89.0.1"  # the admin allowed it
    # No ufile:// path: no request goes to any UFile host, so the default suffix is no reason to refuse.
    pvc = {"dataPath": "pvc://data/coco/", "outputPath": "pvc://out/run/"}
    assert parse_spec(pvc, (".89.0.1",)).output_path.url == "pvc://out/run"
    with pytest.raises(SpecError):  # and only it
        parse_spec(spec, (".89.0.1",))
