"""controller/essence.py: kopf's change detection is off, and nothing in the operator relies on it."""

from __future__ import annotations

import kopf

from im2txt_operator.controller import wiring
from im2txt_operator.controller.essence import NoEssence


def test_the_essence_is_empty_and_never_stored() -> None:
    storage = NoEssence()
    body = kopf.Body({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t-stage1", "labels": {"a": "b"}},
                      "spec": {"template": {"spec": {"containers": [{"name": "trainer"}]}}}})
    patch = kopf.Patch()
    assert storage.build(body=body, extra_fields=["status.active"]) == {}
    assert storage.fetch(body=body) is None
    storage.store(body=body, patch=patch, essence=kopf.BodyEssence(spec={"x": 1}))
    assert not patch  # nothing written to the object


def test_no_handler_of_the_operator_reads_the_essence() -> None:
    """The essence is read only by on.create/update/resume/delete (changing) and daemon/timer (spawning) handlers:
    the day one is added, change detection must come back (drop NoEssence from wiring.startup)."""
    assert wiring.training_event  # the module registered its handler
    registry = kopf.get_default_registry()
    assert {h.id for h in registry._watching.get_all_handlers()} >= {"training_event"}
    assert list(registry._indexing.get_all_handlers()) == []  # the Jobs are our own watch's (job_watch)
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []

