"""loop_lag.py: a loop held by other work shows as lag; an idle one as none."""

from __future__ import annotations

import asyncio
import time

from im2txt_operator import loop_lag
from im2txt_operator.metrics import Metrics


def _observed(metrics: Metrics, le: str) -> float:
    value = metrics.registry.get_sample_value("im2txt_event_loop_lag_seconds_bucket", {"le": le})
    assert value is not None
    return value


async def test_a_busy_loop_shows_as_lag_and_an_idle_one_does_not() -> None:
    metrics = Metrics()
    task = asyncio.create_task(loop_lag.probe(metrics.loop_lag, period=0.01))
    await asyncio.sleep(0.1)  # idle: each wake-up on time
    idle = metrics.registry.get_sample_value("im2txt_event_loop_lag_seconds_count")
    assert idle and _observed(metrics, "0.025") == idle
    time.sleep(0.3)  # the loop held by other work (a long callback)
    await asyncio.sleep(0.05)
    task.cancel()
    assert _observed(metrics, "+Inf") - _observed(metrics, "0.25") == 1  # one wake-up 0.29 s late
