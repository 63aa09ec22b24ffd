"""gc_tuning: what is loaded is frozen, the youngest generation is collected less often, cycles are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from im2txt_operator import cli, gc_tuning


@pytest.fixture(autouse=True)
def gc_restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_freezes_what_is_loaded_and_keeps_the_older_generations_thresholds() -> None:
    gc.set_threshold(700, 11, 12)
    gc.collect()
    loaded = len(gc.get_objects())
    gc_tuning.tune()
    assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, 11, 12)
    assert gc.get_freeze_count() >= loaded * 0.9  # the modules and classes loaded so far
    assert len(gc.get_objects()) < loaded * 0.1  # no collection scans them again


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_cycles_made_after_tune_are_still_freed_without_an_explicit_collect() -> None:
    gc_tuning.tune()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    assert alive() is not None  # a cycle: reference counting alone does not free it
    keep: list[Any] = []
    for _ in range(3 * gc_tuning.YOUNG_THRESHOLD):  # allocations: the youngest generation's collection runs
        keep.append([])
        if alive() is None:
            break
    assert alive() is None


def test_run_tunes_the_collector_before_the_operator_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf

    seen: dict[str, Any] = {}

    async def supported(liveness: str | None) -> None:
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()

    monkeypatch.setattr(cli, "until_supported", supported)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.setdefault("ran", True))
    monkeypatch.setattr(kopf, "configure", lambda **kwargs: None)  # the suite's logging stays as it is
    gc.set_threshold(700, 10, 10)
    assert cli.run(["ns"], False, None, False, metrics_port=0) == 0
    assert seen["ran"] is True
    assert seen["threshold"][0] == gc_tuning.YOUNG_THRESHOLD and seen["frozen"] > 0
