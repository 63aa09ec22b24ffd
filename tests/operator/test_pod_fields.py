"""pod_fields: the spec fields that go into the pods, refused as the Pod API would refuse them, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from im2txt_operator import pod_fields
from im2txt_operator.field_rules import SpecError


def _refused(parse: Any, spec: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(spec)
    return info.value


def test_resources_keep_quantities_and_refuse_a_request_above_its_limit() -> None:
    ok = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1, "example.com/fpga": "2"}}}
    assert pod_fields.resources(ok) == ok["resources"]
    e = _refused(pod_fields.resources, {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}})
    assert e.field == "spec.resources.requests.cpu" and "at most spec.resources.limits.cpu" in e.problem
    assert _refused(pod_fields.resources, {"resources": {"limits": {"nvidia.com/gpu": 1}}}).problem == \
        "nvidia.com/gpu comes from spec.gpus"
    assert _refused(pod_fields.resources, {"resources": {"limits": {"example.com/x": "1.5"}}}).field == \
        "spec.resources.limits.example.com/x"
    assert _refused(pod_fields.resources, {"resources": {"requests": {"example.com/x": "1"}}}).field == \
        "spec.resources.requests"


def test_node_selector_keys_are_label_names_and_values_label_values() -> None:
    assert pod_fields.node_selector({"nodeSelector": {"pool": "gpu", "example.com/zone": ""}}) == {
        "pool": "gpu", "example.com/zone": ""}
    assert _refused(pod_fields.node_selector, {"nodeSelector": {"a b": "x"}}).field == "spec.nodeSelector"
    assert _refused(pod_fields.node_selector, {"nodeSelector": {"pool": "-x"}}).field == "spec.nodeSelector.pool"


@pytest.mark.parametrize(("toleration", "field"), [
    ({"operator": "Exists", "key": "k", "value": "v"}, "spec.tolerations[0].value"),
    ({"key": "", "operator": "Equal"}, "spec.tolerations[0].operator"),
    ({"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}, "spec.tolerations[0].tolerationSeconds"),
    ({"key": "k", "effect": "Sometimes"}, "spec.tolerations[0].effect"),
    ({"key": "k", "priority": 1}, "spec.tolerations[0].priority"),
])
def test_tolerations_the_pod_api_refuses(toleration: dict[str, Any], field: str) -> None:
    assert _refused(pod_fields.tolerations, {"tolerations": [toleration]}).field == field


def test_a_toleration_of_every_taint_is_kept_as_written() -> None:
    assert pod_fields.tolerations({"tolerations": [{"operator": "Exists"}]}) == ({"operator": "Exists"},)


def test_extra_args_may_not_set_or_abbreviate_what_the_operator_sets() -> None:
    assert pod_fields.extra_args({"extraArgs": ["--image_size=299", "--log_every_n_steps=10"]}) == (
        "--image_size=299", "--log_every_n_steps=10")
    full = _refused(pod_fields.extra_args, {"extraArgs": ["--x", "--train_dir=/tmp"]})
    assert full.field == "spec.extraArgs[1]" and "set by the operator" in full.problem
    short = _refused(pod_fields.extra_args, {"extraArgs": ["--number_of=5"]})
    assert "abbreviates --number_of_steps" in short.problem
    assert _refused(pod_fields.extra_args, {"extraArgs": ["-x"]}).field == "spec.extraArgs[0]"
