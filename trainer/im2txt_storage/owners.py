"""Which run wrote each checkpoint bundle of a folder: the ledger that pruning trusts, and nothing else.

An output folder may hold `model.ckpt-N` bundles that this training did not write: checkpoints a user brought from
UAI Train, or the output of a deleted training that this one resumes from. Pruning (the trainer keeps the newest 5,
sync deletes from UFile what the trainer let go) must never take those. So every bundle the trainer saves is
recorded, before its files are moved into place, in `checkpoint-owners.json` beside the `checkpoint` index:
{"model.ckpt-1200": "<run id>", ...}. The run id is the training's uid (IM2TXT_RUN_ID, set by the operator on the
trainer and the sync sidecar). A bundle is a run's own exactly when the ledger names that run for it; a bundle the
ledger does not name, or names for another run, is never deleted. The ledger is a plain file: it is uploaded with
the output and fetched back by the next pod or stage, so ownership survives restarts and the stage change.
Outside the operator (no IM2TXT_RUN_ID) the run id is empty: such runs own what earlier id-less runs recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

LEDGER = "checkpoint-owners.json"
RUN_ENV = "IM2TXT_RUN_ID"


def run_id() -> str:
    return os.environ.get(RUN_ENV, "")


def read(folder: str | Path) -> dict[str, str]:
    """Bundle name -> run id; empty when there is no readable ledger (then nothing counts as anyone's)."""
    try:
        data = json.loads((Path(folder) / LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record(folder: str | Path, bundle: str, run: str) -> None:
    """Record ``bundle`` (a name like model.ckpt-1200) as written by ``run``; atomic (write, fsync, rename)."""
    ledger = read(folder) | {bundle: run}
    Path(folder).mkdir(parents=True, exist_ok=True)
    tmp = Path(folder) / f".{LEDGER}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ledger, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, Path(folder) / LEDGER)


def own(ledger: dict[str, str], bundles: Iterable[str], run: str) -> list[str]:
    """The bundles (paths or names) the ledger names ``run`` for, in the order given."""
    return [b for b in bundles if ledger.get(os.path.basename(b)) == run]
