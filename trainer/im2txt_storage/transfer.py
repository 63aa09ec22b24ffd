"""Parallel tree transfers between a UFile prefix and a local folder (thread pool over `UFileClient`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ufile.util import file_etag

from .client import RemoteObject, StorageError, UFileClient
from .paths import UFileURL

log = logging.getLogger("im2txt_storage")
T = TypeVar("T")
R = TypeVar("R")

PART_SUFFIX = ".im2txt-part"  # our own temporary downloads: never uploaded, never final


@dataclass
class TransferStats:
    transferred: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0


def run_parallel(items: Iterable[T], fn: Callable[[T], R], parallel: int) -> list[R]:
    """Apply `fn` to every item on `parallel` threads; on the first failure cancel what has not started,
    wait for what runs, and raise that failure (OSError becomes a StorageError naming the path)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items))), thread_name_prefix="ufile") as pool:
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            wait(futures)
            exc = failed.exception()
            if isinstance(exc, OSError):
                raise StorageError(f"local file error: {exc}") from exc
            assert exc is not None
            raise exc
        return [f.result() for f in futures]


def local_matches(path: Path, obj: RemoteObject) -> bool:
    """True when `path` already holds `obj` (same size, then same UFile ETag)."""
    try:
        if not path.is_file() or path.stat().st_size != obj.size:
            return False
    except OSError:
        return False
    return file_etag(str(path)) == obj.etag


def download_tree(client: UFileClient, url: UFileURL, dest: Path, *, parallel: int) -> TransferStats:
    """Every object under `url` -> `dest/<relative key>`, skipping files that are already identical."""
    objects = client.list(url)
    jobs: list[tuple[RemoteObject, Path]] = []
    for obj in objects:
        rel = url.relpath(obj.key)
        if rel is None:
            if not obj.key.endswith("/"):
                log.warning("skipping object with an unsafe name: ufile://%s/%s", url.bucket, obj.key)
            continue
        jobs.append((obj, dest / rel))
    stats = TransferStats()
    dest.mkdir(parents=True, exist_ok=True)

    def one(job: tuple[RemoteObject, Path]) -> tuple[str, bool, int]:
        obj, path = job
        if local_matches(path, obj):
            return obj.key, False, 0
        client.download(url.bucket, obj, path)
        log.debug("downloaded ufile://%s/%s (%d bytes)", url.bucket, obj.key, obj.size)
        return obj.key, True, obj.size

    for key, moved, size in run_parallel(jobs, one, parallel):
        (stats.transferred if moved else stats.skipped).append(key)
        stats.bytes += size
    return stats


def upload_files(
    client: UFileClient, url: UFileURL, root: Path, rels: Iterable[str], *, parallel: int, missing_ok: bool = False
) -> dict[str, RemoteObject]:
    """Upload `root/<rel>` -> `url.key(rel)` for every rel, in parallel; returns what UFile now holds.
    With `missing_ok`, a file deleted meanwhile (the Saver dropping an old checkpoint) is left out."""

    def one(rel: str) -> tuple[str, RemoteObject | None]:
        try:
            obj = client.upload(url.bucket, url.key(rel), root / rel)
        except FileNotFoundError:
            if not missing_ok:
                raise
            log.debug("%s vanished before its upload; skipped", rel)
            return rel, None
        log.debug("uploaded %s -> ufile://%s/%s (%d bytes)", rel, url.bucket, obj.key, obj.size)
        return rel, obj

    return {rel: obj for rel, obj in run_parallel(list(rels), one, parallel) if obj is not None}
