"""api_budget: the client's token bucket, the poller's share of requests, and a 429's Retry-After."""

from __future__ import annotations

import math

import pytest

from im2txt_operator.api_budget import MAX_RETRY_AFTER, REQUESTS_PER_LOOK, ApiBudget, TokenBucket, due, retry_after


def test_the_bucket_lets_a_burst_through_then_spaces_requests_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.wait_for_one() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_for_one() == pytest.approx(0.1) and bucket.wait_for_one() == pytest.approx(0.2)
    now[0] = 10.0  # refilled, but never above the burst
    assert [bucket.wait_for_one() for _ in range(3)] == [0.0, 0.0, 0.0] and bucket.wait_for_one() > 0


async def test_take_waits_for_its_token() -> None:
    bucket = TokenBucket(rate=100.0, burst=1)
    await bucket.take()
    import time

    start = time.monotonic()
    await bucket.take()
    assert time.monotonic() - start >= 0.009


def test_a_round_looks_at_what_the_budget_pays_for() -> None:
    # A look: the stage's pod list and up to two log tails, the evaluation pod's list and log tail.
    assert ApiBudget(progress_rps=20.0).looks_per_round(30.0) == 20 * 30 // REQUESTS_PER_LOOK == 120
    assert ApiBudget(progress_rps=0.01).looks_per_round(1.0) == 1  # never starved to nothing
    # At 5,000 running trainings and the default budget, each training is read every 42 rounds (21 min).
    assert math.ceil(5000 / ApiBudget().looks_per_round(30.0)) == 42


def test_due_picks_the_longest_unread_first() -> None:
    looked = {"a": 5.0, "b": 1.0, "c": 3.0}
    assert due(looked, ["a", "b", "c", "new"], 2) == ["new", "b"]
    assert due(looked, ["a", "c"], 5) == ["c", "a"]


@pytest.mark.parametrize(("header", "seconds"), [
    ("1", 1.0), ("0", 0.0), ("2.5", 2.5), ("3600", MAX_RETRY_AFTER), (None, None), ("soon", None), ("-1", None),
    ("nan", None), ("Wed, 21 Oct 2026 07:28:00 GMT", None),
])
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds
