"""How much of the API server the operator may use: a client-side rate limit, the answer to a 429, and the share of
requests the progress poller may spend, so that the operator's load stays flat as the number of trainings grows.

The progress reads (one pod list and one or two log tails per running training) are the only requests whose number
grows with the trainings and not with their changes: at 5,000 running trainings and a 30 s interval they would be
about 500 requests per second, forever. The poller instead spends at most ``progress_rps`` and looks at the
trainings it has not looked at for longest first, so each training's interval grows with their number (the ETA comes
from the trainer's own seconds per step, so sparse samples keep it sensible).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")

# A look at one running training: one pod list, the trainer's log tail and (ufile outputs) the sync sidecar's; then
# the evaluation pod's list and log tail (spec.evaluation, on by default).
REQUESTS_PER_LOOK = 5
MAX_RETRY_AFTER = 30.0  # seconds: a longer Retry-After is not waited for in one request
RETRIES_ON_429 = 5


@dataclass(frozen=True)
class ApiBudget:
    """``qps``/``burst``: the client's rate limit for every request of the controller (controller-runtime's defaults
    are 20/30). Ours are sized for 20 new trainings a second, each about four requests to start (the Job, the
    evaluation Deployment, status, and a pod list), beside the progress budget, which the same limit covers: about
    100 a second, which the limit must pass at under half its rate (a limiter near its rate queues every request:
    at 100, apply p50 was 183 ms against 102 ms without a limit, N = 300).
    ``progress_rps``: what the poller may spend on progress reads, in requests per second."""

    qps: float = 200.0
    burst: int = 400
    progress_rps: float = 20.0

    def looks_per_round(self, interval: float) -> int:
        """How many trainings one poller round may look at."""
        return max(1, int(self.progress_rps * interval / REQUESTS_PER_LOOK))


# Lists the operator makes of pods, Events and Workloads: served from the API server's watch cache (as informers
# list), not read from etcd. A list without a resourceVersion is a consistent read: etcd sends every object of the
# namespace to be filtered by label: at 300 trainings a pod list took 2 s (p50) of the server and slowed
# everything else it served. ANY: whatever the cache holds; a resourceVersion: at least that fresh.
ANY = "0"


def fresh(not_older_than: str | None) -> dict[str, str]:
    """The list parameters for a read at least as fresh as ``not_older_than`` (None: a consistent read)."""
    if not_older_than is None:
        return {}
    return {"resourceVersion": not_older_than, "resourceVersionMatch": "NotOlderThan"}


def due(looked_at: Mapping[K, float], candidates: Iterable[K], limit: int) -> list[K]:
    """The ``limit`` candidates looked at longest ago (never looked at: first), in that order."""
    return sorted(candidates, key=lambda k: looked_at.get(k, float("-inf")))[:limit]


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``take`` waits for one (client-go's token bucket rate limiter)."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)
    lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.tokens, self.stamp = float(self.burst), self.clock()

    def wait_for_one(self) -> float:
        """Take a token; the seconds to wait before using it (0: at once)."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def take(self) -> None:
        async with self.lock:  # waiters queue in order: a burst is spread, not raced
            delay = self.wait_for_one()
            if delay > 0:
                await asyncio.sleep(delay)


def retry_after(header: str | None) -> float | None:
    """Seconds from a 429's Retry-After (API Priority and Fairness sends whole seconds); None when absent or not a
    number of seconds (an HTTP date is not what the API server sends)."""
    try:
        seconds = float(header) if header is not None else None
    except ValueError:
        return None
    if seconds is None or seconds != seconds or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)
