"""controller.queue: one reconcile at a time per training, backoff on failure, the depth and the metrics."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller.cache import Entry
from im2txt_operator.controller.queue import RETRY_DELAYS, Queue
from im2txt_operator.metrics import Metrics

KEY = ("ml", "coco")


class Clock:
    """A clock that moves only when the queue sleeps (so backoff delays are read, not waited)."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def sample(metrics: Metrics, line: str) -> float:
    for text in generate_latest(metrics.registry).decode().splitlines():
        if text.startswith(line + " "):
            return float(text.split()[-1])
    raise AssertionError(f"no {line}")


async def test_failures_back_off_along_the_delays_and_a_success_resets_them() -> None:
    clock, metrics, entry = Clock(), Metrics(), Entry()
    queue = Queue(metrics, sleep=clock.sleep, clock=clock)
    outcomes = [ApiException(500, "InternalError", "etcd")] * 7 + [None, ApiException(503, "x", "y"), None]

    async def work() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def again() -> None:
        await queue.run(KEY, entry, work, again)

    await queue.run(KEY, entry, work, again)
    while entry.retry is not None:
        await entry.retry
    assert clock.slept == [*RETRY_DELAYS, RETRY_DELAYS[-1]]  # the last delay repeats
    assert entry.failures == 0 and len(outcomes) == 2
    await queue.run(KEY, entry, work, again)  # fails once more: back to the first delay
    await entry.retry  # type: ignore[misc]
    assert clock.slept[-1] == RETRY_DELAYS[0] and not outcomes
    assert sample(metrics, 'controller_runtime_reconcile_total{controller="im2txttraining",result="error"}') == 8
    assert sample(metrics, 'controller_runtime_reconcile_total{controller="im2txttraining",result="success"}') == 2
    assert sample(metrics, "im2txt_reconcile_errors_total") == 8
    assert sample(metrics, 'workqueue_adds_total{name="im2txttraining"}') == 10
    assert sample(metrics, 'workqueue_retries_total{name="im2txttraining"}') == 8


async def test_one_pending_retry_per_training() -> None:
    clock, metrics, entry = Clock(), Metrics(), Entry()
    queue = Queue(metrics, sleep=asyncio.sleep, clock=clock)
    ran: list[int] = []

    async def again() -> None:
        ran.append(1)

    queue.retry(entry, 0.01, again)
    first = entry.retry
    queue.retry(entry, 0.01, again)  # one is pending: not a second one
    assert entry.retry is first and queue.depth([entry]) == 1
    await first  # type: ignore[misc]
    assert ran == [1] and entry.retry is None and queue.depth([entry]) == 0


async def test_depth_counts_reconciles_waiting_for_the_lock_and_pending_retries() -> None:
    metrics, entry, other = Metrics(), Entry(), Entry()
    queue = Queue(metrics)
    metrics.follow(list, list, lambda: queue.depth([entry, other]))
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    async def nothing() -> None:
        pass

    running = asyncio.create_task(queue.run(KEY, entry, slow, nothing))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(queue.run(KEY, entry, nothing, nothing)) for _ in range(2)]
    await asyncio.sleep(0)
    queue.retry(other, 3600, nothing)
    assert queue.waiting == 2 and sample(metrics, 'workqueue_depth{name="im2txttraining"}') == 3
    release.set()
    await asyncio.gather(running, *waiting)
    other.retry.cancel()  # type: ignore[union-attr]
    await asyncio.sleep(0)
    assert queue.depth([entry, other]) == 0


async def test_a_reconcile_cancelled_while_it_waits_leaves_the_depth_right() -> None:
    entry, queue = Entry(), Queue(Metrics())

    async def nothing() -> None:
        pass

    async with entry.lock:
        waiter = asyncio.create_task(queue.run(KEY, entry, nothing, nothing))
        await asyncio.sleep(0)
        assert queue.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert queue.waiting == 0 and entry.retry is None
