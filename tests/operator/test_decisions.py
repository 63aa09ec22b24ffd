"""decisions: status_patch, the JSON merge patch of only what changed (None removes a key), and which patch can wait."""

from __future__ import annotations

from im2txt_operator.decisions import deferrable, status_patch


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


def test_a_patch_that_only_records_a_start_time_waits_for_the_next_write() -> None:
    old = {"phase": "Running", "stages": [{"stage": 1, "outcome": "Running"}]}
    started = {**old, "stages": [{"stage": 1, "outcome": "Running", "startTime": "2026-12-07T00:00:00Z"}]}
    assert deferrable(old, status_patch(old, started))
    progressed = {**started, "step": 7}
    assert not deferrable(old, status_patch(old, progressed))  # then it goes with the step
    ended = {**old, "stages": [{"stage": 1, "outcome": "Succeeded", "startTime": "2026-12-07T00:00:00Z"}]}
    assert not deferrable(old, status_patch(old, ended))
    assert not deferrable(None, {"stages": [{"stage": 1, "outcome": "Running"}]})  # the first entry is news
    assert not deferrable(old, {})  # nothing to write is not a deferred write
