"""The work queue: one reconcile at a time per training, a failed one retried with backoff, and the queue's depth."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from im2txt_operator import logs
from im2txt_operator.controller.cache import Entry, Key
from im2txt_operator.metrics import CONTROLLER, Metrics

log = logging.getLogger("im2txt_operator")

RETRY_DELAYS = (1, 2, 5, 10, 30, 60)  # seconds after the 1st, 2nd, ... failure in a row; the last one repeats

Work = Callable[[], Awaitable[None]]


class Queue:
    """Serialises the reconciles of each training on its entry's lock and counts them as controller-runtime does."""

    def __init__(self, metrics: Metrics, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.metrics, self.sleep, self.clock, self.delays = metrics, sleep, clock, delays
        self.waiting = 0  # reconciles asked for that wait for their training's lock

    def ask(self, entry: Entry, run: Callable[[], Coroutine[Any, Any, None]],
            spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        """Ask for a reconcile without waiting for it (``run``: ``self.run(..., asked=True)``, started by ``spawn``).
        Asked again before it starts, nothing more is queued: it reads the cache when it starts, so it sees what the
        later asks were about (a burst of a Job's events is one reconcile, as in controller-runtime's work queue)."""
        if entry.asked:
            return
        entry.asked = True
        spawn(run())

    async def run(self, key: Key, entry: Entry, work: Work, again: Work, *, asked: bool = False) -> None:
        """Run ``work`` under the entry's lock; if it fails, log it and run ``again`` after the next delay.
        ``asked``: it comes from ``ask``, and a reconcile that started since (and so read what was asked) did it."""
        if asked and not entry.asked:
            return
        self.metrics.queue_adds.labels(name=CONTROLLER).inc()
        self.waiting += 1
        started: float | None = None
        try:
            async with entry.lock:
                self.waiting -= 1
                started = self.clock()
                if asked and not entry.asked:
                    return
                entry.asked = False  # from here on, this reconcile reads the cache: a later ask is a new one
                await work()
            entry.failures = 0
            self.metrics.reconciled(self.clock() - started, ok=True)
        except Exception as e:  # any API failure: log, retry with backoff
            delay = self.delays[min(entry.failures, len(self.delays) - 1)]
            entry.failures += 1
            now = self.clock()
            self.metrics.reconciled(now - (started if started is not None else now), ok=False)
            log.warning("reconcile of %s/%s failed (%s); retrying in %ss", *key, logs.short(e), delay,
                        extra=logs.of(*key, entry.body))
            self.retry(entry, delay, again)
        finally:
            if started is None:  # never got the lock (an error or a cancel while waiting)
                self.waiting -= 1

    def retry(self, entry: Entry, delay: float, again: Work) -> None:
        """Run ``again`` after ``delay`` seconds, unless a retry of this entry is pending already."""
        if entry.retry is not None and not entry.retry.done():
            return
        self.metrics.queue_retries.labels(name=CONTROLLER).inc()

        async def later() -> None:
            await self.sleep(delay)
            entry.retry = None
            await again()

        entry.retry = asyncio.create_task(later())

    def depth(self, entries: Iterable[Entry]) -> int:
        """workqueue_depth: reconciles waiting for a lock plus retries waiting for their delay."""
        return self.waiting + sum(1 for e in entries if e.retry is not None and not e.retry.done())
