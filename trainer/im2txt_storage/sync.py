"""`sync`: upload the output folder while training runs, and once more at the end.

Every round uploads new or changed files. TensorFlow checkpoints are sets of files (`model.ckpt-N.index`,
`model.ckpt-N.data-0000i-of-0000n`, optionally `.meta`) named by the `checkpoint` index file; a reader of the
output path must never see an index that names a checkpoint whose files are not all there. So a round
1. uploads plain files and the files of every *complete* checkpoint (index + all data shards) that changed,
2. then uploads the `checkpoint` index - the exact bytes it parsed - only if every checkpoint it names that
   exists locally is complete and uploaded, and the latest one exists.
3. with pruning on (the default), deletes from UFile the checkpoint files the trainer has deleted locally and
   the new index no longer names (the Saver keeps the last 5; without this the output path would collect
   every checkpoint of a two-week run). Nothing else is ever deleted.
Incomplete checkpoints and temporary files (TensorFlow's `*.tmp*`, `*_temp*` folders, hidden files, our own
`.im2txt-part` downloads) wait for a later round.
The decisions are pure functions over plain data (`plan_round`, `index_ready`); `Syncer` does the I/O.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ufile.util import file_etag

from .client import StorageError, UFileClient
from .paths import UFileURL, safe_relpath
from .transfer import PART_SUFFIX, run_parallel, upload_files

log = logging.getLogger("im2txt_storage")

INDEX_NAME = "checkpoint"
_CKPT_FILE = re.compile(r"^(?P<prefix>.+-\d+)\.(?:index|meta|data-(?P<shard>\d+)-of-(?P<shards>\d+))$")
_INDEX_LINE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"\s*$')

Stamp = tuple[int, int]  # (size, mtime_ns): "unchanged since we looked"


# -- pure decisions ----------------------------------------------------------------------------------
def is_ignored(rel: str) -> bool:
    """Temporary or private files that must never be uploaded (and names the SDK cannot send)."""
    parts = rel.split("/")
    name = parts[-1]
    return (
        safe_relpath(rel) is None
        or any(p.startswith(".") for p in parts)
        or any("_temp" in p for p in parts[:-1])
        or ".tmp" in name
        or ".tempstate" in name
        or name.endswith(PART_SUFFIX)
    )


def checkpoint_prefix(rel: str) -> str | None:
    """`dir/model.ckpt-5.index` -> `dir/model.ckpt-5`; None for a file that is no checkpoint part."""
    m = _CKPT_FILE.match(rel)
    return m.group("prefix") if m else None


def checkpoint_groups(rels: Iterable[str]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for rel in rels:
        prefix = checkpoint_prefix(rel)
        if prefix is not None:
            groups.setdefault(prefix, set()).add(rel)
    return groups


def is_complete(prefix: str, rels: set[str]) -> bool:
    """A checkpoint is complete when its .index and every data shard `i of n` are present."""
    if f"{prefix}.index" not in rels:
        return False
    shards = [m for r in rels if (m := _CKPT_FILE.match(r)) and m.group("shards")]
    if not shards:
        return False
    total = int(shards[0].group("shards"))
    have = {int(m.group("shard")) for m in shards if int(m.group("shards")) == total}
    return have == set(range(total))


def parse_index(text: str, index_rel: str) -> tuple[str | None, list[str]]:
    """The `checkpoint` file -> (latest prefix, all prefixes), as paths relative to the output root.
    Absolute paths (the TF1 Saver writes them) are taken relative to the index's folder by basename."""
    folder = PurePosixPath(index_rel).parent
    latest: str | None = None
    named: list[str] = []
    for line in text.splitlines():
        m = _INDEX_LINE.match(line)
        if not m:
            continue
        path = PurePosixPath(m.group(2))
        rel = str(folder / (path.name if path.is_absolute() else path))
        rel = rel[2:] if rel.startswith("./") else rel
        if m.group(1) == "model_checkpoint_path":
            latest = rel
        named.append(rel)
    return latest, named


def index_ready(index_rel: str, text: str, local: Mapping[str, Stamp], uploaded: Mapping[str, Stamp]) -> bool:
    """May this `checkpoint` index be uploaded now? Only if its latest checkpoint exists, and every
    checkpoint it names that exists locally is complete and uploaded as it is now."""
    latest, named = parse_index(text, index_rel)
    if latest is None:
        return False
    groups = checkpoint_groups(local)
    if latest not in groups:
        return False
    for prefix in set(named):
        rels = groups.get(prefix)
        if rels is None:
            continue
        if not is_complete(prefix, rels) or any(uploaded.get(r) != local[r] for r in rels):
            return False
    return True


def plan_round(local: Mapping[str, Stamp], uploaded: Mapping[str, Stamp]) -> tuple[list[str], list[str]]:
    """-> (files to upload first, `checkpoint` index files to consider after them)."""
    groups = checkpoint_groups(local)
    first: list[str] = []
    indexes: list[str] = []
    for rel in sorted(local):
        if is_ignored(rel) or uploaded.get(rel) == local[rel]:
            continue
        if PurePosixPath(rel).name == INDEX_NAME:
            indexes.append(rel)
            continue
        prefix = checkpoint_prefix(rel)
        if prefix is not None and not is_complete(prefix, groups[prefix]):
            continue  # still being written
        first.append(rel)
    return first, indexes


def stale_checkpoint_files(remote: Iterable[str], local: Iterable[str], index_rel: str, text: str) -> list[str]:
    """Remote checkpoint files the trainer has let go: in the index's folder, not named by the (uploaded)
    index, and no longer on local disk (the Saver keeps the last N). Everything else is left alone."""
    _, named = parse_index(text, index_rel)
    folder = PurePosixPath(index_rel).parent
    keep, here = set(named), set(local)
    return sorted(
        r for r in remote
        if (p := checkpoint_prefix(r)) is not None and PurePosixPath(r).parent == folder
        and p not in keep and r not in here
    )


# -- I/O shell -----------------------------------------------------------------------------------------
def scan(root: Path) -> dict[str, Stamp]:
    found: dict[str, Stamp] = {}
    if not root.is_dir():
        return found
    for path in root.rglob("*"):
        try:
            st = path.stat()
        except FileNotFoundError:  # deleted while we looked (the Saver drops old checkpoints)
            continue
        if path.is_file():
            found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


@dataclass
class RoundResult:
    uploaded: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


class Syncer:
    def __init__(self, client: UFileClient, url: UFileURL, root: Path, *, parallel: int, prune: bool = True) -> None:
        self.client = client
        self.url = url
        self.root = root
        self.parallel = parallel
        self.prune = prune
        self.uploaded: dict[str, Stamp] = {}  # rel -> stamp of the local file when it was uploaded
        self.remote: set[str] = set()  # rels UFile holds, as far as we know

    def seed(self) -> None:
        """Remember what UFile already holds (e.g. what `fetch` brought down), so it is not sent again."""
        remote = {o.key: o for o in self.client.list(self.url)}
        self.remote = {rel for key in remote if (rel := self.url.relpath(key)) is not None}
        for rel, stamp in scan(self.root).items():
            obj = remote.get(self.url.key(rel))
            if obj is not None and obj.size == stamp[0] and file_etag(str(self.root / rel)) == obj.etag:
                self.uploaded[rel] = stamp
        log.debug("sync: %d local files already in %s", len(self.uploaded), self.url)

    def run_round(self) -> RoundResult:
        result = RoundResult()
        local = scan(self.root)
        first, indexes = plan_round(local, self.uploaded)
        done = upload_files(self.client, self.url, self.root, first, parallel=self.parallel, missing_ok=True)
        for rel in done:
            self.uploaded[rel] = local[rel]
            self.remote.add(rel)
        result.uploaded.extend(sorted(done))
        local = scan(self.root)  # again: the Saver may have dropped old checkpoints meanwhile
        for rel in indexes:
            path = self.root / rel
            try:
                data = path.read_bytes()
                stamp = (path.stat().st_size, path.stat().st_mtime_ns)
            except FileNotFoundError:
                continue
            if stamp != local.get(rel) or len(data) != stamp[0]:
                result.waiting.append(rel)  # rewritten since the scan: next round
                continue
            if not index_ready(rel, data.decode("utf-8", "replace"), local, self.uploaded):
                result.waiting.append(rel)
                continue
            self.client.upload_bytes(self.url.bucket, self.url.key(rel), data)
            self.uploaded[rel] = stamp
            self.remote.add(rel)
            result.uploaded.append(rel)
            if self.prune:
                result.deleted += self._prune(rel, data.decode("utf-8", "replace"), local)
        return result

    def _prune(self, index_rel: str, text: str, local: Mapping[str, Stamp]) -> list[str]:
        stale = stale_checkpoint_files(self.remote, local, index_rel, text)

        def delete(rel: str) -> str:
            self.client.delete(self.url.bucket, self.url.key(rel))
            return rel

        gone = run_parallel(stale, delete, self.parallel)
        for rel in gone:
            self.remote.discard(rel)
            self.uploaded.pop(rel, None)
        return gone

    def run(self, interval: float, stop: threading.Event, until_file: Path | None = None) -> None:
        """Rounds every `interval` seconds until `stop` is set (SIGTERM) or `until_file` appears, then a
        final round whose failure raises (periodic failures are logged and retried next round)."""
        self.seed()
        log.info("sync: watching %s -> %s every %gs", self.root, self.url, interval)
        next_round = time.monotonic() + interval
        while not stop.is_set():
            if until_file is not None and until_file.exists():
                break
            remaining = next_round - time.monotonic()
            if remaining > 0:
                stop.wait(min(remaining, 0.5) if until_file is not None else remaining)
                continue
            started = time.monotonic()
            try:
                res = self.run_round()
            except StorageError as exc:
                log.warning("sync round failed, will retry next round: %s", exc)
                res = RoundResult()
            if res.uploaded or res.deleted:
                log.info("sync: uploaded %d files in %.1fs (%s); pruned %d", len(res.uploaded),
                         time.monotonic() - started, ", ".join(res.uploaded[-3:]), len(res.deleted))
            next_round = time.monotonic() + interval
        started = time.monotonic()
        res = self.run_round()
        log.info("sync: final upload of %d files to %s in %.1fs", len(res.uploaded), self.url,
                 time.monotonic() - started)
        if res.waiting:
            log.warning("sync: not uploaded (incomplete checkpoint or changing): %s", ", ".join(res.waiting))
