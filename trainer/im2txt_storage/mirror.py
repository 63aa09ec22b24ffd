"""`mirror`: a read-only local copy of a training's TensorBoard event files, for a TensorBoard pod.

Every pass lists the output path, picks the objects whose file name matches an `--include` glob (by default
TensorBoard's event files, `*tfevents*`), and downloads those that are new or whose size or ETag changed since
the local copy was made (`sync` re-uploads an event file whole as the trainer appends to it). Sub-folders are
kept (`train/events...` stays `train/events...`: a TensorBoard run per folder). A download goes to a hidden
temporary file in the same folder, is checked for size and ETag, and is renamed over the old copy, so a reader
sees the old file or the whole new one, never a partial one. The temporary name never holds "tfevents", so
TensorBoard never takes it for an event file. Local copies whose object is gone are removed (unless `prune` is
off). A run's files are downloaded one after another in name order (TensorBoard reads them in that order).

Read-only: the mirror reaches UFile only through `ReadOnlyUFile`, which has `list` and `download` and nothing
else, so it can never upload, delete or rewrite an object (the `checkpoint` index included).

Faults: a pass whose listing fails after the client's retries changes nothing locally; a file that fails after
its retries is left as it was and tried again next pass. Only a refused key pair (HTTP 401/403) ends the loop.
`plan_pass` and `wanted` are pure; `Mirror` does the I/O.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .client import AuthError, NotFoundError, RemoteObject, StorageError, UFileClient
from .paths import UFileURL
from .transfer import PART_SUFFIX, local_matches, run_parallel

log = logging.getLogger("im2txt_storage")

DEFAULT_INCLUDE = ("*tfevents*",)  # what TensorBoard itself takes for an event file ("tfevents" in the name)
Version = tuple[int, str]  # (size, ETag) of a UFile object


class Stopped(Exception):
    """The stop event is set (SIGTERM): the pass ends where it is."""


class ReadOnlyUFile:
    """The two UFile operations the mirror may use. It holds bound methods, not the client, so the mirror has
    no path to an upload or a delete."""

    __slots__ = ("_download", "_list")

    def __init__(self, client: UFileClient) -> None:
        self._list = client.list
        self._download = client.download

    def list(self, url: UFileURL) -> list[RemoteObject]:
        return self._list(url)

    def download(self, bucket: str, obj: RemoteObject, dest: Path, *, part_name: str) -> None:
        self._download(bucket, obj, dest, part_name=part_name)


def interruptible_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A retry back-off sleep (for `UFileClient.sleep`) that gives up at once when `stop` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise Stopped()

    return sleep


# -- pure decisions ----------------------------------------------------------------------------------
def wanted(rel: str, include: Sequence[str]) -> bool:
    """Is `rel` (a path relative to the mirror root) a file to mirror? Its file name (not its folder) matches
    one of the `include` globs, and no part of it is hidden (temporary files, ours included, are)."""
    parts = rel.split("/")
    if any(not p or p.startswith(".") for p in parts) or rel.endswith(PART_SUFFIX):
        return False
    return any(fnmatch.fnmatchcase(parts[-1], glob) for glob in include)


def part_name(rel: str) -> str:
    """The temporary file a download of `rel` goes to, beside it: hidden, and without "tfevents" in it."""
    digest = hashlib.sha1(PurePosixPath(rel).name.encode()).hexdigest()[:16]
    return f".mirror-{digest}{PART_SUFFIX}"


@dataclass
class PassPlan:
    download: list[str] = field(default_factory=list)  # missing here, or changed in UFile since copied
    verify: list[str] = field(default_factory=list)  # a local file of unknown origin with the right size
    unchanged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # local copies whose object is gone


def plan_pass(
    remote: Mapping[str, Version], local: Mapping[str, int], known: Mapping[str, Version], *, prune: bool
) -> PassPlan:
    """`remote`: wanted objects (rel -> version); `local`: wanted local files (rel -> size); `known`: the
    version each local copy was made from (this process's memory). A file found locally that this process did
    not write (a restarted container on a kept emptyDir) is compared by ETag before anything is downloaded."""
    plan = PassPlan()
    for rel in sorted(remote):
        version, size = remote[rel], local.get(rel)
        if size is None or size != version[0]:
            plan.download.append(rel)
        elif rel not in known:
            plan.verify.append(rel)
        elif known[rel] == version:
            plan.unchanged.append(rel)
        else:
            plan.download.append(rel)  # same size, other ETag: rewritten
    if prune:
        plan.delete = sorted(set(local) - set(remote))
    return plan


def by_folder(rels: Sequence[str]) -> list[list[str]]:
    """Group paths by folder, each group in name order (TensorBoard reads a run's event files in that order
    and does not expect an earlier one to appear after a later one)."""
    groups: dict[str, list[str]] = {}
    for rel in sorted(rels):
        groups.setdefault(str(PurePosixPath(rel).parent), []).append(rel)
    return [groups[k] for k in sorted(groups)]


# -- I/O shell -----------------------------------------------------------------------------------------
@dataclass
class PassResult:
    downloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # rel -> why (tried again next pass)
    bytes: int = 0


class Mirror:
    def __init__(
        self,
        source: ReadOnlyUFile,
        url: UFileURL,
        root: Path,
        *,
        include: Sequence[str] = DEFAULT_INCLUDE,
        parallel: int = 4,
        prune: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        if not include:
            raise ValueError("include needs at least one glob")
        self.source = source
        self.url = url
        self.root = root
        self.include = tuple(include)
        self.parallel = parallel
        self.prune = prune
        self.stop = stop or threading.Event()
        self.known: dict[str, Version] = {}  # rel -> version of the object its local copy was made from
        self._warned: set[str] = set()

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def scan(self) -> dict[str, int]:
        """Wanted regular files under the root -> size (hidden folders, ours included, are not entered)."""
        found: dict[str, int] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                path = Path(folder, name)
                rel = path.relative_to(self.root).as_posix()
                if not wanted(rel, self.include):
                    continue
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[rel] = st.st_size
        return found

    def remove_leftovers(self) -> list[Path]:
        """Remove temporary downloads a killed process left behind (ours end in `.im2txt-part[.range]`)."""
        gone = []
        for path in self.root.rglob(f".*{PART_SUFFIX}*"):
            if path.name.endswith((PART_SUFFIX, PART_SUFFIX + ".range")) and path.is_file():
                path.unlink(missing_ok=True)
                gone.append(path)
        return gone

    def _remote(self) -> dict[str, RemoteObject]:
        found: dict[str, RemoteObject] = {}
        for obj in self.source.list(self.url):
            rel = self.url.relpath(obj.key)
            if rel is None:
                if not obj.key.endswith("/") and obj.key not in self._warned:
                    self._warned.add(obj.key)
                    log.warning("mirror: skipping object with an unsafe name: ufile://%s/%s", self.url.bucket, obj.key)
                continue
            if wanted(rel, self.include):
                found[rel] = obj
        return found

    def run_pass(self) -> PassResult:
        """One pass. Raises StorageError when the listing fails (nothing changed then), AuthError when the keys
        are refused, Stopped when the stop event is set; a single file's failure goes into `failed`."""
        self._check_stop()
        remote = self._remote()  # before anything local changes: a failed listing deletes nothing
        plan = plan_pass({r: (o.size, o.etag) for r, o in remote.items()}, self.scan(), self.known,
                         prune=self.prune)
        result = PassResult(unchanged=plan.unchanged)
        for rel in list(self.known):
            if rel not in remote:
                del self.known[rel]
        for rel in plan.delete:
            try:
                (self.root / rel).unlink(missing_ok=True)
            except OSError as exc:
                result.failed[rel] = f"remove {self.root / rel}: {exc}"
                continue
            log.debug("mirror: removed %s (gone from %s)", rel, self.url)
            result.removed.append(rel)
        verify = set(plan.verify)

        def one(rel: str) -> tuple[str, str, str]:
            """-> (rel, "downloaded" | "unchanged" | "vanished" | "failed", why)."""
            obj, path = remote[rel], self.root / rel
            try:
                if rel in verify and local_matches(path, obj):
                    return rel, "unchanged", ""
                self.source.download(self.url.bucket, obj, path, part_name=part_name(rel))
            except NotFoundError:
                return rel, "vanished", ""  # deleted since the listing; the next pass sees it gone
            except AuthError:
                raise
            except StorageError as exc:
                return rel, "failed", str(exc)
            except OSError as exc:
                return rel, "failed", f"download ufile://{self.url.bucket}/{obj.key} -> {path}: local file error: {exc}"
            log.debug("mirror: downloaded ufile://%s/%s (%d bytes)", self.url.bucket, obj.key, obj.size)
            return rel, "downloaded", ""

        def folder(rels: list[str]) -> list[tuple[str, str, str]]:
            out = []
            for rel in rels:
                self._check_stop()
                out.append(one(rel))
            return out

        for outcomes in run_parallel(by_folder(plan.download + plan.verify), folder, self.parallel):
            for rel, what, why in outcomes:
                obj = remote[rel]
                if what in ("downloaded", "unchanged"):
                    self.known[rel] = (obj.size, obj.etag)
                if what == "downloaded":
                    result.downloaded.append(rel)
                    result.bytes += obj.size
                elif what == "unchanged":
                    result.unchanged.append(rel)
                elif what == "failed":
                    result.failed[rel] = why
                    log.warning("mirror: %s not updated, will retry next pass: %s", rel, why)
        result.unchanged.sort()
        return result

    def _summary(self, res: PassResult, started: float) -> str:
        return (f"mirrored {self.url} -> {self.root}: {len(res.downloaded)} files downloaded ({res.bytes} bytes), "
                f"{len(res.unchanged)} unchanged, {len(res.removed)} removed, {len(res.failed)} failed, "
                f"{time.monotonic() - started:.1f}s")

    def _describe(self) -> str:
        return f"files matching {' '.join(self.include)}" + ("" if self.prune else ", removed ones kept")

    def run_once(self) -> PassResult:
        """One pass (after removing leftovers); raises StorageError if any file could not be mirrored."""
        self.remove_leftovers()
        started = time.monotonic()
        try:
            res = self.run_pass()
        except Stopped:
            log.info("mirror: stopped")
            return PassResult()
        log.info("%s", self._summary(res, started))
        if res.failed:
            rel, why = next(iter(sorted(res.failed.items())))
            raise StorageError(f"{len(res.failed)} files not mirrored, first {rel}: {why}")
        return res

    def run(self, interval: float, stop: threading.Event | None = None) -> None:
        """A pass every `interval` seconds until the stop event is set. A failed pass is logged and tried again
        next interval; only AuthError (refused keys do not heal in a running container) is raised."""
        if stop is not None:
            self.stop = stop
        self.remove_leftovers()
        log.info("mirror: watching %s -> %s every %gs, %s (read-only)", self.url, self.root, interval,
                 self._describe())
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                res = self.run_pass()
            except Stopped:
                break
            except AuthError:
                raise
            except StorageError as exc:
                log.warning("mirror pass failed, will retry in %gs: %s", interval, exc)
            except OSError as exc:
                log.warning("mirror pass failed, will retry in %gs: local file error: %s", interval, exc)
            else:
                if res.downloaded or res.removed or res.failed:
                    log.info("%s", self._summary(res, started))
            self.stop.wait(interval)
        log.info("mirror: stopped")
