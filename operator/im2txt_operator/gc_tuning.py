"""Python's cycle collector, set for a process that keeps a large cache of small, long-lived objects.

CPython 3.11 collects its youngest generation every 700 allocations. The operator's watch events and reconciles
allocate far more than that per training, so objects still in use (an event being handled, a training's cached
body until its next event) are promoted again and again, and the old generation soon holds a quarter more than
its last full collection left: the trigger of the next one. A full collection scans every object of the process
and stops the event loop while it runs. At 1,000 trainings (bench-operator --no-reactor, 10,000 unrelated Jobs)
there were 26 of them, 144-179 ms each: in that run, the slowest 1% of apply-to-Job latencies were those pauses.

Two settings, both in the standard library's ``gc`` module:
- freeze what is loaded before the operator runs (modules, classes, kopf's registry: never garbage), so that no
  collection scans it again;
- collect the youngest generation every ``YOUNG_THRESHOLD`` allocations. What is still in use then is a small part
  of what was allocated, so little is promoted.
In the same run with both: 2 full collections (16 and 34 ms), 1.5 s in all collections (5.4 s before), CPU per
1,000 trainings 21 s (31 before), apply-to-Job p99 14 ms (30-43 ms). 20,000 measured the same within noise.
Garbage without cycles is freed by reference counting at once, as before; cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 5_000  # allocations between two collections of the youngest generation (CPython's default: 700)


def tune() -> None:
    """Collect once, freeze what is loaded, and collect the youngest generation less often. Called once, by
    ``run``, before the operator starts its watches."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
