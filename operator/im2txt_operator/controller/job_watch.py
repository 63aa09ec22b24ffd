"""The operator's own list and watch of its Jobs, and the index of them by training.

Why not kopf's: kopf turns every watch event into a handler invocation (a body, a patch, a logger, kwargs for each
handler, the index's own pass), 1-2 ms of CPU per event, and a training's Jobs bring about a dozen events (the Job
controller's every count). Here an event is one slim copy of the Job put in the index and handed to ``Handle``; the
reconcile it may ask for is coalesced by the work queue.

Like client-go's reflector: list (consistent, in pages), then watch from the list's resourceVersion with bookmarks,
resume a watch the server ended from the last version seen, and list again only on 410 Gone. What the new list no
longer holds is handed over as DELETED (a Job deleted while the watch was down has no event of its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any

from im2txt_operator import logs
from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller.cache import Key, job_key, slim
from im2txt_operator.controller.owned import controlled_by_a_training
from im2txt_operator.kube import Kube
from im2txt_operator.pods import LABEL_MANAGED_BY, MANAGED_BY

log = logging.getLogger("im2txt_operator")

SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"  # filtered by the API server: unrelated Jobs cost nothing
WATCH_TIMEOUT_S = 600  # the server ends each watch after this; it resumes from the last version seen
RETRY_DELAYS = (1, 2, 5, 10, 30)  # seconds between tries after the 1st, 2nd, ... failure in a row

Handle = Callable[[str, dict[str, Any]], None]  # (ADDED, MODIFIED or DELETED; the Job, slim)


class Gone(Exception):
    """The watch's resourceVersion is compacted away (410): only a new list tells what changed."""


class JobIndex:
    """Our Jobs by training: those whose controller is a training (anyone may put our labels on a Job, and the index
    must not grow with theirs). Complete once ``sync`` has run, which startup does before kopf's first handler."""

    def __init__(self) -> None:
        self._by_key: dict[Key, dict[str, dict[str, Any]]] = {}  # key -> uid -> the Job, slim

    def get(self, key: Key, default: Collection[dict[str, Any]] = ()) -> Collection[dict[str, Any]]:
        jobs = self._by_key.get(key)
        return tuple(jobs.values()) if jobs else default

    def put(self, job: dict[str, Any]) -> None:
        found, uid = job_key(job), job["metadata"].get("uid", "")
        if found is None:
            return
        if controlled_by_a_training(job):
            self._by_key.setdefault(found[0], {})[uid] = job
        else:  # its owner reference was taken away: no longer a training's
            self.drop(job)

    def drop(self, job: dict[str, Any]) -> None:
        found = job_key(job)
        jobs = self._by_key.get(found[0]) if found else None
        if found and jobs is not None:
            jobs.pop(job["metadata"].get("uid", ""), None)
            if not jobs:
                del self._by_key[found[0]]

    def jobs(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Every Job indexed in the namespace (None: in all)."""
        for key, jobs in list(self._by_key.items()):
            if namespace is None or key[0] == namespace:
                yield from list(jobs.values())

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._by_key.values())


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def apply(index: JobIndex, handle: Handle, kind: str, obj: dict[str, Any]) -> None:
    """One watch event: the index first (a reconcile it leads to reads the index), then the handler."""
    job = slim(obj)
    if kind == "DELETED":
        index.drop(job)
    else:
        index.put(job)
    handle(kind, job)


async def sync(kube: Kube, namespace: str | None, index: JobIndex, handle: Handle) -> str:
    """List the Jobs (every page), hand over what changed since the index last saw them and, as DELETED, what is no
    longer there; the list's resourceVersion, for the watch to start from."""
    items: list[dict[str, Any]] = []
    page: str | None = None
    version = ""
    while True:
        answer = await kube.list_jobs(namespace, SELECTOR, page)
        meta = answer.get("metadata") or {}
        version = version or str(meta.get("resourceVersion") or "")  # the first page's: all pages are one snapshot
        items += answer.get("items") or ()
        page = meta.get("continue") or None
        if page is None:
            break
    seen = {job["metadata"].get("uid") for job in items}
    for gone in [j for j in index.jobs(namespace) if j["metadata"].get("uid") not in seen]:
        apply(index, handle, "DELETED", gone)
    known = {j["metadata"].get("uid"): _version(j) for j in index.jobs(namespace)}
    for job in items:
        job.setdefault("kind", "Job")  # a list's items carry no kind
        job.setdefault("apiVersion", "batch/v1")
        uid = job["metadata"].get("uid")
        if known.get(uid) != _version(job):
            apply(index, handle, "MODIFIED" if uid in known else "ADDED", job)
    return version


async def watch(kube: Kube, namespace: str | None, index: JobIndex, handle: Handle, version: str) -> str:
    """Follow one watch until the server ends it; the last resourceVersion seen (bookmarks included)."""
    try:
        async for event in kube.watch_jobs(namespace, SELECTOR, version, WATCH_TIMEOUT_S):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise ApiException(int(obj.get("code") or 500), str(obj.get("reason") or "Error"),
                                   str(obj.get("message") or ""))
            version = _version(obj) or version
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                apply(index, handle, str(kind), obj)
    except ApiException as e:
        if e.status == 410:  # an answer to the request, or an ERROR event in the stream
            raise Gone(e.message) from e
        raise
    return version


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failed tries in a row (1 or more)."""
    return RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]


async def first_sync(kube: Kube, namespace: str | None, index: JobIndex, handle: Handle,
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> str:
    """``sync``, tried until it succeeds (startup: the API is not there yet, or refuses), with the watch's backoff."""
    failures = 0
    while True:
        try:
            return await sync(kube, namespace, index, handle)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            failures += 1
            delay = retry_delay(failures)
            log.warning("listing the Jobs in %s failed (%s); again in %ss", namespace or "all namespaces",
                        logs.short(e), delay)
            await sleep(delay)


async def follow(kube: Kube, namespace: str | None, index: JobIndex, handle: Handle, version: str,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Watch forever from ``version`` (what ``sync`` returned): resume where a watch ended, list again on 410."""
    failures = 0
    where = namespace or "all namespaces"
    listing = False
    while True:
        try:
            if listing:
                version, listing = await sync(kube, namespace, index, handle), False
            version = await watch(kube, namespace, index, handle, version)
            failures = 0
        except asyncio.CancelledError:
            raise
        except Gone:
            log.info("the Jobs watch in %s is past etcd's history (410 Gone): listing again", where)
            listing = True
        except Exception as e:  # the connection dropped, the server restarts: resume from the version seen
            failures += 1
            delay = retry_delay(failures)
            log.warning("the Jobs watch in %s failed (%s); again in %ss", where, logs.short(e), delay)
            await sleep(delay)
