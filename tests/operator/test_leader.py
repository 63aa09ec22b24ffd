"""leader: the Lease bodies of acquiring, renewing and taking over, and the timing rule."""

from __future__ import annotations

import pytest

from im2txt_operator.leader import Timing, claimed, holder, micro_time

NOW, LATER = "2026-12-03T04:00:00.000000Z", "2026-12-03T04:00:01.000000Z"


def test_a_new_lease_names_the_holder_and_its_duration() -> None:
    body = claimed(None, "im2txt-operator", "pod-a", 8.0, NOW)
    assert body["metadata"] == {"name": "im2txt-operator"}
    assert body["spec"] == {"holderIdentity": "pod-a", "leaseDurationSeconds": 8, "renewTime": NOW,
                            "acquireTime": NOW, "leaseTransitions": 0}
    assert holder(body) == "pod-a"


def test_renewing_keeps_acquire_time_and_transitions_and_the_resource_version() -> None:
    held = claimed(None, "l", "pod-a", 8.0, NOW)
    held["metadata"]["resourceVersion"] = "41"
    renewed = claimed(held, "l", "pod-a", 8.0, LATER)
    assert renewed["metadata"]["resourceVersion"] == "41"  # the PUT fails with 409 if someone wrote in between
    assert (renewed["spec"]["acquireTime"], renewed["spec"]["renewTime"], renewed["spec"]["leaseTransitions"]) == (
        NOW, LATER, 0)


def test_taking_over_counts_a_transition_and_restarts_acquire_time() -> None:
    held = claimed(None, "l", "pod-a", 8.0, NOW)
    taken = claimed(held, "l", "pod-b", 8.0, LATER)
    assert (holder(taken), taken["spec"]["acquireTime"], taken["spec"]["leaseTransitions"]) == ("pod-b", LATER, 1)
    # A released Lease (holder cleared) is taken the same way.
    released = {**held, "spec": {**held["spec"], "holderIdentity": ""}}
    assert claimed(released, "l", "pod-b", 8.0, LATER)["spec"]["leaseTransitions"] == 1


def test_timing_keeps_a_leader_from_acting_once_others_may_take_over() -> None:
    Timing(8, 6, 1)
    for lease, deadline, retry in ((8, 8, 1), (8, 6, 6), (8, 9, 1), (8, 6, 0)):
        with pytest.raises(ValueError):
            Timing(lease, deadline, retry)


def test_micro_time_is_rfc3339_with_microseconds() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", micro_time())
