"""logs: the fields of a line about a training, and an error in a few words."""

from __future__ import annotations

from im2txt_operator import logs
from im2txt_operator.api_errors import ApiException


def test_about_names_the_training_as_kopf_names_objects() -> None:
    assert logs.about("ml", "coco", 2, 7) == {
        "k8s_ref": {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "namespace": "ml", "name": "coco"},
        "namespace": "ml", "training": "coco", "stage": 2, "generation": 7}


def test_short_gives_an_api_answer_its_code_and_cuts_the_message() -> None:
    assert logs.short(ApiException(409, "Conflict", "x" * 300)) == "HTTP 409 Conflict: " + "x" * 200
    assert logs.short(TimeoutError("no answer")) == "TimeoutError: no answer"
