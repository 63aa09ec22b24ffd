"""`sync`: upload the output folder while training runs, and once more at the end.

TensorFlow checkpoints are sets of files (`model.ckpt-N.index`, `model.ckpt-N.data-0000i-of-0000n`, optionally
`.meta`) named by the `checkpoint` index file; a reader of the output path must never see an index that names a
checkpoint whose files are not all there, and a resuming stage starts from what the index names, so the bucket's
index is the training's saved progress. A round therefore
1. reads the `checkpoint` index (before looking at the folder: the trainer writes it after the checkpoint's
   files) and uploads the files of the newest complete checkpoint it names before anything else (with the one
   before it if that is not up either, and any the trainer saves meanwhile);
2. publishes an index as soon as one of them is up: the exact bytes read if every checkpoint they name is up,
   else the same text with the not-yet-uploaded entries left out (`publishable_index`), naming the newest
   checkpoint that is up. A round that takes longer than the trainer's save period still publishes what it
   uploaded, so the bucket's index lags by what is in flight, never by many rounds;
3. uploads the other new or changed files (older checkpoints newest first, then plain files), republishing the
   index if that let it name more;
4. with pruning on (the default), deletes from UFile the checkpoint files the trainer has deleted locally and
   the published index no longer names (the Saver keeps the last 5; without this the output path would collect
   every checkpoint of a two-week run), and only those of bundles this run wrote (owners.py: the trainer's
   ledger). Nothing else is ever deleted, and a failed delete only logs a warning.
Incomplete checkpoints and temporary files (TensorFlow's `*.tmp*`, `*_temp*` folders, hidden files, our own
`.im2txt-part` downloads) wait for a later round.
The decisions are pure functions over plain data (`plan_round`, `publishable_index`, ...); `Syncer` does the I/O,
and `run_sync` (module `sidecar`) the timing: rounds, SIGTERM, the final upload's deadline.
"""

from __future__ import annotations

import copy
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ufile.util import file_etag

from . import owners
from .client import RemoteObject, StorageError, UFileClient
from .paths import UFileURL, safe_relpath
from .transfer import PART_SUFFIX, run_parallel

log = logging.getLogger("im2txt_storage")

INDEX_NAME = "checkpoint"
_CKPT_FILE = re.compile(r"^(?P<prefix>.+-\d+)\.(?:index|meta|data-(?P<shard>\d+)-of-(?P<shards>\d+))$")
_INDEX_LINE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"\s*$')
_TIMESTAMP_LINE = re.compile(r"^\s*all_model_checkpoint_timestamps\s*:")
_STEP = re.compile(r"-(\d+)$")

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
        rel = _rel(folder, m.group(2))
        if m.group(1) == "model_checkpoint_path":
            latest = rel
        named.append(rel)
    return latest, named


def step_of(prefix: str) -> int:
    """`dir/model.ckpt-1200` -> 1200 (-1 for a name without a step)."""
    m = _STEP.search(prefix)
    return int(m.group(1)) if m else -1


def publishable_index(index_rel: str, text: str, up: set[str]) -> tuple[str, str] | None:
    """What may be published of this `checkpoint` index, given the checkpoints whose files UFile holds (`up`):
    -> (the checkpoint it then names as latest, its text), or None when it names none that is up.
    The text is the exact text when everything it names is up; otherwise the entries that are not up are left
    out (with their timestamps), and `model_checkpoint_path` names the newest entry that is up."""
    folder = PurePosixPath(index_rel).parent
    lines = text.splitlines()
    latest_text: str | None = None
    all_texts: list[str] = []
    for line in lines:
        if m := _INDEX_LINE.match(line):
            if m.group(1) == "model_checkpoint_path":
                latest_text = m.group(2)
            else:
                all_texts.append(m.group(2))
    if latest_text is None:
        return None
    latest = _rel(folder, latest_text)
    if latest in up and all(_rel(folder, t) in up for t in all_texts):
        return latest, text
    # TensorFlow lists all_model_checkpoint_paths oldest first; the newest one that is up stands in.
    choice = latest_text if latest in up else next((t for t in reversed(all_texts) if _rel(folder, t) in up), None)
    if choice is None:
        return None
    out: list[str] = []
    kept: list[bool] = []  # per all_model_checkpoint_paths entry; the i-th timestamp belongs to the i-th path
    n_timestamps = 0
    for line in lines:
        m = _INDEX_LINE.match(line)
        if m and m.group(1) == "model_checkpoint_path":
            out.append(line.replace(f'"{latest_text}"', f'"{choice}"'))
        elif m:
            kept.append(_rel(folder, m.group(2)) in up)
            if kept[-1]:
                out.append(line)
        elif _TIMESTAMP_LINE.match(line):
            if n_timestamps >= len(kept) or kept[n_timestamps]:
                out.append(line)
            n_timestamps += 1
        else:
            out.append(line)
    return _rel(folder, choice), "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _rel(folder: PurePosixPath, path_text: str) -> str:
    """A path from the index, relative to the output root (absolute ones, as the TF1 Saver writes them, are
    taken relative to the index's folder by basename)."""
    path = PurePosixPath(path_text)
    rel = str(folder / (path.name if path.is_absolute() else path))
    return rel[2:] if rel.startswith("./") else rel


def complete_and_up(local: Mapping[str, Stamp], uploaded: Mapping[str, Stamp]) -> tuple[set[str], set[str]]:
    """-> (local checkpoints that are complete and whose every file is uploaded as it is now,
    local checkpoints that are not)."""
    up, not_up = set(), set()
    for prefix, rels in checkpoint_groups(local).items():
        ok = is_complete(prefix, rels) and all(uploaded.get(r) == local[r] for r in rels)
        (up if ok else not_up).add(prefix)
    return up, not_up


@dataclass(frozen=True)
class Plan:
    newest: list[str]  # the files of the newest checkpoint each index names: uploaded first
    older: list[str]  # complete checkpoints older than that one (the Saver will drop them), newest first
    rest: list[str]  # everything else: plain files, checkpoints no index names as older
    indexes: list[str]  # `checkpoint` index files: published after `newest`, never uploaded as files


def plan_round(local: Mapping[str, Stamp], uploaded: Mapping[str, Stamp], targets: Iterable[str] = ()) -> Plan:
    """Which changed files to upload, in which order. `targets` are the checkpoints the indexes name as latest."""
    groups = checkpoint_groups(local)
    wanted = set(targets)
    newest_in: dict[PurePosixPath, int] = {}
    for prefix in wanted:
        folder = PurePosixPath(prefix).parent
        newest_in[folder] = max(newest_in.get(folder, -1), step_of(prefix))
    newest: list[str] = []
    older: list[str] = []
    plain: list[str] = []
    indexes: list[str] = []
    for rel in sorted(local):
        if is_ignored(rel):
            continue
        if PurePosixPath(rel).name == INDEX_NAME:
            indexes.append(rel)
            continue
        if uploaded.get(rel) == local[rel]:
            continue
        prefix = checkpoint_prefix(rel)
        if prefix is None:
            plain.append(rel)
        elif not is_complete(prefix, groups[prefix]):
            continue  # still being written
        elif prefix in wanted:
            newest.append(rel)
        elif step_of(prefix) < newest_in.get(PurePosixPath(prefix).parent, -1):
            older.append(rel)
        else:
            plain.append(rel)
    older.sort(key=lambda r: -step_of(checkpoint_prefix(r) or ""))
    return Plan(newest, older, plain, indexes)


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
    waiting: list[str] = field(default_factory=list)  # indexes whose latest checkpoint is not published yet
    deleted: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)  # checkpoints an index published in this round names
    errors: list[StorageError] = field(default_factory=list)


def _always() -> bool:
    return True


class Syncer:
    """The round's I/O. Thread-safe enough for the periodic rounds and the final round to overlap: the state
    lives behind a lock, and an index never goes back to an older checkpoint."""

    def __init__(self, client: UFileClient, url: UFileURL, root: Path, *, parallel: int, prune: bool = True) -> None:
        self.client = client
        self.url = url
        self.root = root
        self.parallel = parallel
        self.prune = prune
        self.run = owners.run_id()  # whose bundles pruning may delete (the training's uid)
        self.uploaded: dict[str, Stamp] = {}  # rel -> stamp of the local file when it was uploaded
        self.remote: set[str] = set()  # rels UFile holds, as far as we know
        self.up: set[str] = set()  # checkpoints whose complete set of files UFile holds
        self.published: dict[str, tuple[str, str]] = {}  # index rel -> (checkpoint it names, text) in UFile
        self._lock = threading.Lock()

    def seed(self) -> None:
        """Remember what UFile already holds (e.g. what `fetch` brought down), so it is not sent again, and which
        checkpoint the bucket's index names."""
        remote = {o.key: o for o in self.client.list(self.url)}
        self.remote |= {rel for key in remote if (rel := self.url.relpath(key)) is not None}
        self.up |= {p for p, rels in checkpoint_groups(self.remote).items() if is_complete(p, rels)}
        for rel, stamp in scan(self.root).items():
            obj = remote.get(self.url.key(rel))
            if obj is not None and obj.size == stamp[0] and file_etag(str(self.root / rel)) == obj.etag:
                self.uploaded[rel] = stamp
        for rel in sorted(self.remote):
            if PurePosixPath(rel).name == INDEX_NAME and not is_ignored(rel):
                self._seed_published(rel, remote[self.url.key(rel)])
        log.debug("sync: %d local files already in %s", len(self.uploaded), self.url)

    def _seed_published(self, rel: str, obj: RemoteObject) -> None:
        """What the bucket's index names: from the local copy if it is the same, else read from UFile (the trainer
        may have saved since `fetch`, or this is a restarted sidecar)."""
        if rel in self.uploaded:
            text = (self.root / rel).read_text("utf-8", "replace")
        else:
            with tempfile.TemporaryDirectory(prefix="im2txt-sync-") as tmp:
                self.client.download(self.url.bucket, obj, Path(tmp) / INDEX_NAME)
                text = (Path(tmp) / INDEX_NAME).read_text("utf-8", "replace")
        latest, _ = parse_index(text, rel)
        if latest is not None:
            self.published[rel] = (latest, text)

    def sharing_state(self, client: UFileClient) -> Syncer:
        """The same sync on another client (the periodic rounds', which stop retrying at SIGTERM): one state."""
        twin = copy.copy(self)  # the containers (and the lock) are shared; they are only changed in place
        twin.client = client
        return twin

    # -- what the bucket's index names ----------------------------------------------------------------
    def published_checkpoint(self, index_rel: str = INDEX_NAME) -> str | None:
        with self._lock:
            entry = self.published.get(index_rel)
        return entry[0] if entry else None

    def _read_indexes(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        for rel in sorted(scan(self.root)):
            if PurePosixPath(rel).name == INDEX_NAME and not is_ignored(rel):
                try:
                    texts[rel] = (self.root / rel).read_bytes().decode("utf-8", "replace")
                except FileNotFoundError:
                    continue
        return texts

    # -- a round ---------------------------------------------------------------------------------------
    def run_round(self, *, may_publish: Callable[[], bool] = _always, may_prune: Callable[[], bool] = _always,
                  older: bool = True) -> RoundResult:
        """One round (see the module's docstring). Failures are collected in the result, not raised: what could
        be uploaded and published is, whatever else failed. `older=False` (the periodic rounds) leaves out the
        checkpoints older than the newest: the Saver drops them soon, and they would hold up the next round."""
        result = RoundResult()
        texts, plan = self._newest_first(result, may_publish)
        if plan.older and older:
            self._upload(plan.older, scan(self.root), result)
            self._publish(texts, result, may_publish)  # older checkpoints may be up now
        if plan.rest:
            self._upload(plan.rest, scan(self.root), result)
        if any(parse_index(t, r)[0] != parse_index(texts.get(r, ""), r)[0] for r, t in self._read_indexes().items()):
            texts, _ = self._newest_first(result, may_publish)  # the trainer saved meanwhile: publish that too
        for rel, text in texts.items():
            latest = parse_index(text, rel)[0]
            if latest is None or self.published_checkpoint(rel) != latest:
                result.waiting.append(rel)
        if self.prune and result.published and may_prune():
            result.deleted = self._prune(scan(self.root))
        return result

    def _newest_first(self, result: RoundResult, may_publish: Callable[[], bool]) -> tuple[dict[str, str], Plan]:
        """Upload the newest checkpoint each index names (and the one before it if that is not up either), and
        publish as soon as one is up. While they upload, a checkpoint the trainer saves is uploaded too: under
        faults, one unlucky request then holds up the index no longer than the next save.
        -> (the indexes read last, the plan, less what was uploaded here)."""
        # The index first, then the folder: the trainer writes a checkpoint's files before the index naming it.
        texts = self._read_indexes()
        local = scan(self.root)
        with self._lock:
            plan = plan_round(local, self.uploaded, _latest(texts))
            published = max((step_of(p) for p, _ in self.published.values()), default=-1)
        runner_up = [r for r in plan.older if checkpoint_prefix(r) == checkpoint_prefix(plan.older[0])
                     and step_of(checkpoint_prefix(r) or "") > published] if plan.older else []
        plan = Plan(plan.newest, [r for r in plan.older if r not in runner_up], plan.rest, plan.indexes)
        seen = {"texts": texts}
        submitted = set(plan.newest + runner_up)

        def saved_since() -> list[str]:
            new_texts = self._read_indexes()
            if _latest(new_texts) == _latest(seen["texts"]):
                return []
            now = scan(self.root)
            local.update(now)  # (`local` is what the uploads are recorded against)
            with self._lock:
                newer = [r for r in plan_round(now, self.uploaded, _latest(new_texts)).newest if r not in submitted]
            seen["texts"] = new_texts
            submitted.update(newer)
            return newer

        def publish() -> None:
            self._publish(seen["texts"], result, may_publish)

        self._upload(plan.newest + runner_up, local, result, publish, saved_since)
        publish()
        return seen["texts"], plan

    def _upload(self, rels: list[str], local: dict[str, Stamp], result: RoundResult,
                on_checkpoint_up: Callable[[], None] | None = None,
                more: Callable[[], list[str]] | None = None) -> None:
        """Upload each file (in parallel); a failure is collected and does not stop the others. Whenever a
        checkpoint has become complete in UFile, `on_checkpoint_up` runs (it publishes) while the rest go on;
        `more`, asked every 0.25 s while uploads run, names files to add."""

        def one(rel: str) -> StorageError | None:
            try:
                self.client.upload(self.url.bucket, self.url.key(rel), self.root / rel)
            except FileNotFoundError:  # the Saver dropped it meanwhile: nothing to upload
                return _VANISHED
            except StorageError as exc:
                return exc
            except OSError as exc:
                return StorageError(f"upload {self.root / rel}: local file error: {exc}")
            return None

        if not rels:
            return
        with ThreadPoolExecutor(max_workers=max(1, self.parallel), thread_name_prefix="ufile") as pool:
            futures = {pool.submit(one, rel): rel for rel in rels}
            while futures:
                done, _ = wait(futures, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    self._record(futures.pop(future), future.result(), local, result, on_checkpoint_up)
                if more is not None and futures:
                    futures.update({pool.submit(one, rel): rel for rel in more()})
        with self._lock:
            up, not_up = complete_and_up(local, self.uploaded)
            self.up -= not_up
            self.up |= up

    def _record(self, rel: str, err: StorageError | None, local: Mapping[str, Stamp], result: RoundResult,
                on_checkpoint_up: Callable[[], None] | None) -> None:
        if err is not None:
            if err is not _VANISHED:
                result.errors.append(err)
            return
        with self._lock:
            if rel in local:
                self.uploaded[rel] = local[rel]
            self.remote.add(rel)
            before = set(self.up)
            up, not_up = complete_and_up(local, self.uploaded)
            self.up -= not_up
            self.up |= up
            grew = bool(self.up - before)
        result.uploaded.append(rel)
        if grew and on_checkpoint_up is not None:
            on_checkpoint_up()

    def _publish(self, texts: Mapping[str, str], result: RoundResult, may_publish: Callable[[], bool]) -> None:
        for rel, text in texts.items():
            with self._lock:
                choice = publishable_index(rel, text, self.up)
                current = self.published.get(rel)
            if choice is None or (current is not None and (current[1] == choice[1]
                                                           or step_of(choice[0]) < step_of(current[0]))):
                continue  # nothing new, or it would take the bucket back to an older checkpoint
            if not may_publish():
                return
            try:
                self.client.upload_bytes(self.url.bucket, self.url.key(rel), choice[1].encode("utf-8"))
            except StorageError as exc:
                result.errors.append(exc)
                continue
            with self._lock:
                current = self.published.get(rel)
                if current is None or step_of(choice[0]) >= step_of(current[0]):
                    self.published[rel] = choice
                self.remote.add(rel)
            result.published.append(choice[0])
            result.uploaded.append(rel)
            # Read by the operator's progress poller (status.uploadedStep): keep the words.
            log.info("sync: published checkpoint %s (index uploaded)", choice[0])

    def _prune(self, local: Mapping[str, Stamp]) -> list[str]:
        with self._lock:
            stale = sorted({r for rel, (_, text) in self.published.items()
                            for r in stale_checkpoint_files(self.remote, local, rel, text)})
        stale = self._own(stale)

        def delete(rel: str) -> str | None:
            try:  # one try: a stale file left now is deleted after the next publish, without holding anything up
                self.client.delete(self.url.bucket, self.url.key(rel), attempts=1)
            except StorageError as exc:  # tried again next round; never a reason to fail
                log.warning("sync: could not delete an old checkpoint file, will try again: %s", exc)
                return None
            return rel

        gone = [rel for rel in run_parallel(stale, delete, self.parallel) if rel is not None]
        with self._lock:
            for rel in gone:
                self.remote.discard(rel)
                self.uploaded.pop(rel, None)
                if (prefix := checkpoint_prefix(rel)) is not None:
                    self.up.discard(prefix)
        return gone


    def _own(self, rels: list[str]) -> list[str]:
        """The files of bundles this run wrote, by the trainer's ledger in their folder (owners.py): another run's
        bundle in the same output path is never deleted, even when the trainer has no copy of it."""
        ledgers: dict[PurePosixPath, dict[str, str]] = {}
        out = []
        for rel in rels:
            folder = PurePosixPath(rel).parent
            if folder not in ledgers:
                ledgers[folder] = owners.read(self.root / folder)
            prefix = checkpoint_prefix(rel)
            if prefix is not None and owners.own(ledgers[folder], [prefix], self.run):
                out.append(rel)
        return out


def _latest(texts: Mapping[str, str]) -> set[str]:
    """The checkpoints these `checkpoint` index texts name as latest."""
    return {latest for rel, text in texts.items() if (latest := parse_index(text, rel)[0]) is not None}


_VANISHED = StorageError("vanished")  # a file the Saver deleted before its upload: skipped, not an error
