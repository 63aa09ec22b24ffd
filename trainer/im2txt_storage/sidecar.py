"""The `sync` sidecar's timing: periodic rounds, health, and a final round that keeps a deadline.

Periodic rounds run on a thread of their own. When SIGTERM comes (or `--until-file` appears), a process-wide
deadline is set (every request from then on gets timeouts no longer than what is left, and no retry starts after
it), the periodic round in flight stops retrying, and the final round starts at once on another thread: the
newest checkpoint and its index first, then the rest, then pruning, only if time is left. The main thread waits
for the final round until the deadline and no longer: a request that still hangs cannot keep the sidecar past
the pod's grace period, where the kubelet would SIGKILL it without a word.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .client import StorageError, UFileClient, set_deadline
from .sync import INDEX_NAME, RoundResult, Syncer, parse_index, step_of

log = logging.getLogger("im2txt_storage")

# A 300 s grace period (the operator's) holds the trainer's own last save first; this is what is left for us.
DEFAULT_FINAL_DEADLINE = 240.0
WARN_AFTER_INTERVALS = 2
# Pruning is housekeeping: it starts only while at least this share of the deadline is left.
PRUNE_SHARE = 0.5


class FinalUploadError(StorageError):
    """The final upload did not finish (in time); the message says what the bucket's index names now."""


@dataclass
class Health:
    """How far the bucket's index is behind the trainer's newest checkpoint; warns past 2 intervals."""

    interval: float
    first_seen: dict[str, float]
    warned: bool = False

    def check(self, syncer: Syncer) -> float:
        newest = trainer_newest(syncer.root)
        now = time.monotonic()
        if newest is not None and newest not in self.first_seen:
            self.first_seen[newest] = _saved_at(syncer.root / f"{newest}.index", now)
        published = syncer.published_checkpoint()
        pub_step = step_of(published) if published else -1
        pending = [t for p, t in self.first_seen.items() if step_of(p) > pub_step]
        self.first_seen = {p: t for p, t in self.first_seen.items() if step_of(p) > pub_step}
        lag = now - min(pending) if pending else 0.0
        if lag > WARN_AFTER_INTERVALS * self.interval:
            log.warning("sync: the bucket's index names %s, %.0fs behind the trainer's newest checkpoint %s "
                        "(more than %d intervals of %gs): uploads are failing or too slow", published or "nothing",
                        lag, newest, WARN_AFTER_INTERVALS, self.interval)
            self.warned = True
        elif self.warned and not pending:
            log.info("sync: the bucket's index caught up with the trainer (%s)", published)
            self.warned = False
        return lag


def trainer_newest(root: Path) -> str | None:
    """The checkpoint the local `checkpoint` index names as latest (None without one)."""
    try:
        return parse_index((root / INDEX_NAME).read_text("utf-8", "replace"), INDEX_NAME)[0]
    except OSError:
        return None


def _saved_at(index_file: Path, now: float) -> float:
    """When the trainer saved it, on the monotonic clock (its .index file's mtime; now if unknown)."""
    try:
        age = max(time.time() - index_file.stat().st_mtime, 0.0)
    except OSError:
        return now
    return now - age


def bucket_state(syncer: Syncer) -> str:
    published = syncer.published_checkpoint()
    newest = trainer_newest(syncer.root)
    index = f"{syncer.url}{INDEX_NAME}"
    state = f"the bucket's index {index} names {published}" if published else f"the bucket has no index {index}"
    if newest and newest != published:
        state += f" (the trainer's newest is {newest})"
    return state


def run_sync(syncer: Syncer, periodic_client: UFileClient, interval: float, stop: threading.Event, *,
             final_deadline: float = DEFAULT_FINAL_DEADLINE, until_file: Path | None = None) -> RoundResult:
    """Rounds every `interval` seconds until `stop` (SIGTERM) or `until_file`, then the final round.
    `syncer.client` does the final round; `periodic_client` (same keys and settings) the periodic ones, and stops
    retrying once `stop` is set. Raises FinalUploadError when the final round failed or ran out of time."""
    syncer.seed()
    log.info("sync: watching %s -> %s every %gs (final upload deadline %gs)", syncer.root, syncer.url, interval,
             final_deadline)
    periodic = syncer.sharing_state(periodic_client)
    periodic_client.abandon = stop
    health = Health(interval, {})
    thread = threading.Thread(target=_periodic, args=(periodic, interval, stop, health), name="sync-rounds",
                              daemon=True)
    thread.start()
    while not stop.wait(0.5 if until_file is not None else None):
        if until_file is not None and until_file.exists():
            stop.set()
    started = time.monotonic()
    # Requests end a little before the deadline and the wait for them a little later, still before it: the error
    # line and the termination log are written, and the process is gone, before the kubelet's SIGKILL.
    margin = min(2.0, final_deadline * 0.1)
    set_deadline(started + max(final_deadline - margin, 0.1))
    outcome: list[RoundResult | BaseException] = []

    def may_prune() -> bool:  # not while a periodic round may still publish; never at the cost of the deadline
        return not thread.is_alive() and _left(started, final_deadline) > final_deadline * PRUNE_SHARE

    def final() -> None:
        try:
            outcome.append(syncer.run_round(may_prune=may_prune))
        except BaseException as exc:  # reported by the main thread
            outcome.append(exc)

    worker = threading.Thread(target=final, name="sync-final", daemon=True)
    worker.start()
    worker.join(max(final_deadline - margin / 2 - (time.monotonic() - started), 0))
    took = time.monotonic() - started
    if not outcome:
        raise FinalUploadError(f"final upload did not finish within its deadline of {final_deadline:g}s; "
                               f"{bucket_state(syncer)}")
    res = outcome[0]
    if isinstance(res, BaseException):
        if isinstance(res, StorageError):
            raise FinalUploadError(f"final upload failed after {took:.1f}s: {res}; {bucket_state(syncer)}")
        raise res
    if res.errors:
        raise FinalUploadError(f"final upload failed after {took:.1f}s ({len(res.errors)} errors, first: "
                               f"{res.errors[0]}); {bucket_state(syncer)}")
    log.info("sync: final upload of %d files to %s in %.1fs; %s", len(res.uploaded), syncer.url, took,
             bucket_state(syncer))
    if res.waiting:
        log.warning("sync: not published (incomplete checkpoint or changing): %s", ", ".join(res.waiting))
    return res


def _left(started: float, deadline: float) -> float:
    return deadline - (time.monotonic() - started)


def _periodic(syncer: Syncer, interval: float, stop: threading.Event, health: Health) -> None:
    # A round starts every `interval` seconds (at once if the last one took longer), so a checkpoint waits at
    # most one interval for its round whatever the rounds cost.
    next_round = time.monotonic() + interval
    while not stop.wait(max(next_round - time.monotonic(), 0)):
        started = time.monotonic()
        next_round = started + interval
        try:
            res = syncer.run_round(may_publish=lambda: not stop.is_set(), may_prune=lambda: not stop.is_set(),
                                   older=False)
        except StorageError as exc:
            res = RoundResult(errors=[exc])
        except Exception as exc:  # a local error (a file we cannot read): next round, not a dead sidecar
            log.warning("sync round failed, will retry next round: %s: %s", type(exc).__name__, exc)
            continue
        if stop.is_set():
            return
        if res.errors:
            log.warning("sync round: %d uploads failed, will retry next round; first: %s", len(res.errors),
                        res.errors[0])
        if res.uploaded or res.deleted:
            log.info("sync: uploaded %d files in %.1fs (%s); pruned %d", len(res.uploaded),
                     time.monotonic() - started, ", ".join(res.uploaded[-3:]), len(res.deleted))
        health.check(syncer)
