"""api_errors.py: the API's Status answer as an exception, naming the field the server blames; a proxy's page too."""

from __future__ import annotations

import json

from im2txt_operator.api_errors import api_exception


def test_a_status_answer_keeps_its_reason_message_and_causes() -> None:
    causes = [{"field": "spec.template.spec.containers[0].image", "reason": "FieldValueRequired"}]
    e = api_exception(422, "Unprocessable Entity", json.dumps(
        {"kind": "Status", "reason": "Invalid", "message": "Job.batch \"x\" is invalid", "details": {"causes": causes}}
    ).encode())
    assert (e.status, e.reason, e.message, e.details["causes"]) == (422, "Invalid", 'Job.batch "x" is invalid', causes)
    assert str(e) == 'HTTP 422 Invalid: Job.batch "x" is invalid'


def test_a_page_that_is_not_a_status_keeps_its_http_reason_and_start() -> None:
    e = api_exception(502, "Bad Gateway", b"<html>" + b"x" * 500)
    assert (e.status, e.reason, e.details) == (502, "Bad Gateway", {}) and e.message == "<html>" + "x" * 194
