"""leader: the Lease bodies of acquiring, renewing and taking over, and the timing rule."""

from __future__ import annotations

import asyncio
import time

import pytest

from im2txt_operator.leader import LeaderElector, Timing, claimed, holder, micro_time

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


class _Leases:
    """An in-memory Lease API (get, create, replace with resourceVersion checks); ``hang`` makes writes hang."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.version = 0
        self.hang = False

    async def get_lease(self, namespace: str, name: str) -> dict | None:
        return None if self.lease is None else {**self.lease, "metadata": {**self.lease["metadata"]}}

    async def _write(self, body: dict) -> dict:
        if self.hang:
            await asyncio.sleep(3600)
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        return self.lease

    async def create_lease(self, namespace: str, body: dict) -> dict:
        return await self._write(body)

    async def replace_lease(self, namespace: str, body: dict) -> dict:
        return await self._write(body)


async def test_a_leader_may_write_for_the_renew_deadline_after_it_sent_its_last_renewal() -> None:
    leases = _Leases()
    elector = LeaderElector(leases, "ns", "l", "pod-a", Timing(0.8, 0.6, 0.1))  # type: ignore[arg-type]
    assert elector.time_left() <= 0  # not leading yet: a fenced client writes nothing
    await elector.acquire()
    assert 0.5 < elector.time_left() <= 0.6
    await asyncio.sleep(0.3)
    assert elector.time_left() <= 0.3  # no renewal ran: the time runs out


async def test_a_hung_renewal_stops_the_leader_when_its_time_is_up() -> None:
    leases = _Leases()
    elector = LeaderElector(leases, "ns", "l", "pod-a", Timing(0.8, 0.6, 0.1))  # type: ignore[arg-type]
    await elector.acquire()
    leases.hang = True  # the API takes the PUT and never answers
    started = time.monotonic()
    await asyncio.wait_for(elector.hold(), 5)
    assert time.monotonic() - started < 0.6 + 0.15  # bounded by the time left, not the client's 60 s
    assert elector.time_left() <= 0
