"""`fetch`: UAI Train's "before the job" step.

The data path goes to /data/data; files already under the output path go to /data/output, which is how stage 2
and any retried pod resume from the latest uploaded checkpoint. Either side may be absent (a `pvc://` side is
mounted, not copied)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .client import StorageError, UFileClient
from .paths import UFileURL
from .transfer import TransferStats, download_tree

log = logging.getLogger("im2txt_storage")


@dataclass(frozen=True)
class FetchPair:
    url: UFileURL
    dest: Path
    role: str  # "data" or "output"


def fetch(client: UFileClient, pairs: list[FetchPair], *, parallel: int) -> dict[str, TransferStats]:
    results: dict[str, TransferStats] = {}
    for pair in pairs:
        started = time.monotonic()
        stats = download_tree(client, pair.url, pair.dest, parallel=parallel)
        if pair.role == "data" and not stats.transferred and not stats.skipped:
            # The trainer would fail later on an empty glob; say what is wrong where it is wrong.
            raise StorageError(f"no objects under the data path {pair.url}: check the training's dataPath")
        log.info(
            "fetched %s -> %s: %d files downloaded (%d bytes), %d unchanged, %.1fs",
            pair.url, pair.dest, len(stats.transferred), stats.bytes, len(stats.skipped),
            time.monotonic() - started,
        )
        results[pair.role] = stats
    return results
