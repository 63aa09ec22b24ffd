"""How late the operator's event loop runs: every event, reconcile and request of the operator shares one asyncio
loop, so a loop that is late by L makes each of them wait L more. A timer asks to wake every PERIOD seconds; how much
later than asked it woke is the lag, observed into a histogram (im2txt_event_loop_lag_seconds). Where apply or stage
advance latency grows, this tells whether the time went inside the operator (the loop is busy) or outside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Histogram

PERIOD = 0.1  # seconds between looks: ten wake-ups a second, a cost too small to measure


async def probe(lag: Histogram, period: float = PERIOD, clock: Callable[[], float] = time.monotonic) -> None:
    """Observe the loop's lag every ``period`` seconds, until cancelled."""
    while True:
        asked = clock() + period
        await asyncio.sleep(period)
        lag.observe(max(0.0, clock() - asked))
