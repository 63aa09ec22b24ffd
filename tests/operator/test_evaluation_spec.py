"""evaluation_spec: spec.evaluation -> Evaluation, its defaults (the reference evaluate.py's) and its errors."""

from __future__ import annotations

from typing import Any

import pytest

from im2txt_operator.evaluation_spec import DEFAULT_RESOURCES, Evaluation, parse_evaluation
from im2txt_operator.spec import SpecError


def _error(evaluation: Any) -> SpecError:
    with pytest.raises(SpecError) as e:
        parse_evaluation({"evaluation": evaluation})
    return e.value


def test_absent_or_empty_is_on_with_the_reference_defaults() -> None:
    expected = Evaluation(enabled=True, file_pattern="val-?????-of-00004", interval_seconds=600,
                          num_examples=10132, bleu=False, bleu_images=500,
                          resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}})
    assert parse_evaluation({}) == expected
    assert parse_evaluation({"evaluation": {}}) == expected
    assert parse_evaluation({"evaluation": None}) == expected  # a bare `evaluation:` in YAML


def test_every_field_is_taken_as_given() -> None:
    ev = parse_evaluation({"evaluation": {
        "enabled": False, "filePattern": "test-*.tfrecord", "intervalSeconds": 60, "numExamples": 1,
        "bleu": True, "bleuImages": 100_000,
        "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi", "nvidia.com/gpu": 1}}}})
    assert (ev.enabled, ev.file_pattern, ev.interval_seconds, ev.num_examples, ev.bleu, ev.bleu_images) == (
        False, "test-*.tfrecord", 60, 1, True, 100_000)
    # Its own resources replace the defaults whole; a GPU is the user's to ask for here (no spec.gpus to take).
    assert ev.resources == {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi", "nvidia.com/gpu": 1}}
    assert ev.resources != DEFAULT_RESOURCES


@pytest.mark.parametrize("key, lo, hi", [("intervalSeconds", 60, 86400), ("numExamples", 1, 10_000_000),
                                         ("bleuImages", 1, 100_000)])
def test_integers_are_held_to_their_range_at_both_ends(key: str, lo: int, hi: int) -> None:
    field = {"intervalSeconds": "interval_seconds", "numExamples": "num_examples", "bleuImages": "bleu_images"}[key]
    assert getattr(parse_evaluation({"evaluation": {key: lo}}), field) == lo
    assert getattr(parse_evaluation({"evaluation": {key: hi}}), field) == hi
    for bad in (lo - 1, hi + 1, True, 600.0, "600"):
        e = _error({key: bad})
        assert e.field == f"spec.evaluation.{key}"
        assert f"expected an integer between {lo} and {hi}, got {bad!r}" in str(e)


@pytest.mark.parametrize("pattern", ["val/x-*", "val *", "", " ", "a" * 256, 5, None])
def test_the_file_pattern_is_one_file_name_in_the_data_path(pattern: Any) -> None:
    e = _error({"filePattern": pattern})
    assert e.field == "spec.evaluation.filePattern" and "spec.dataPath" in str(e) and repr(pattern) in str(e)


def test_a_file_pattern_of_255_characters_is_taken() -> None:
    assert parse_evaluation({"evaluation": {"filePattern": "v" * 255}}).file_pattern == "v" * 255


@pytest.mark.parametrize("key", ["enabled", "bleu"])
def test_switches_are_booleans_only(key: str) -> None:
    for bad in ("true", 1, None):
        e = _error({key: bad})
        assert e.field == f"spec.evaluation.{key}" and f"expected true or false, got {bad!r}" in str(e)


@pytest.mark.parametrize("evaluation, field", [
    ("yes", "spec.evaluation"),
    ({"enable": True}, "spec.evaluation.enable"),
    ({"enabled": "true"}, "spec.evaluation.enabled"),
    ({"filePattern": "val/x-*"}, "spec.evaluation.filePattern"),
    ({"intervalSeconds": 10}, "spec.evaluation.intervalSeconds"),
    ({"numExamples": 0}, "spec.evaluation.numExamples"),
    ({"bleuImages": True}, "spec.evaluation.bleuImages"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "spec.evaluation.resources.requests.cpu"),
    ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}, "spec.evaluation.resources.requests.cpu"),
    ({"resources": {"gpus": 1}}, "spec.evaluation.resources.gpus"),
])
def test_bad_evaluation_fields_are_named(evaluation: Any, field: str) -> None:
    assert _error(evaluation).field == field
