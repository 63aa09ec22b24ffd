"""decisions: status_patch, the JSON merge patch of only what changed (None removes a key)."""

from __future__ import annotations

from im2txt_operator.decisions import status_patch


def test_only_changed_keys_are_patched() -> None:
    old = {"phase": "Running", "step": 5, "conditions": [{"type": "Ready", "status": "True"}]}
    new = {"phase": "Running", "step": 6, "conditions": [{"type": "Ready", "status": "True"}]}
    assert status_patch(old, new) == {"step": 6}
    assert status_patch(old, dict(old)) == {}


def test_none_removes_a_key_that_is_there_and_is_left_out_otherwise() -> None:
    assert status_patch({"eta": "5m", "phase": "Running"}, {"eta": None, "phase": "Succeeded"}) == {
        "eta": None, "phase": "Succeeded"}
    assert status_patch({"phase": "Running"}, {"eta": None}) == {}
    assert status_patch(None, {"phase": "Pending", "eta": None}) == {"phase": "Pending"}


def test_a_list_is_replaced_whole_as_a_merge_patch_does() -> None:
    old = {"stages": [{"stage": 1, "outcome": "Running"}]}
    new = {"stages": [{"stage": 1, "outcome": "Succeeded"}, {"stage": 2, "outcome": "Running"}]}
    assert status_patch(old, new) == new
