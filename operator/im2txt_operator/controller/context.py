"""The operator's context: one per process, made at startup and kept in kopf's memo (no module-level state)."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from im2txt_operator import logs
from im2txt_operator.api_budget import ApiBudget
from im2txt_operator.cluster_checks import ClusterChecks
from im2txt_operator.controller.cache import Cache
from im2txt_operator.controller.job_watch import JobIndex
from im2txt_operator.controller.queue import Queue
from im2txt_operator.decisions import Event
from im2txt_operator.kube import Kube
from im2txt_operator.metrics import Metrics
from im2txt_operator.spec import UFILE_DOMAINS

log = logging.getLogger("im2txt_operator")

PROGRESS_INTERVAL = 30.0  # seconds between the poller's rounds; `run` takes IM2TXT_PROGRESS_INTERVAL (tests, demo)
METRICS_PORT = 9090
MEMO_KEY = "context"

Post = Callable[[Mapping[str, Any], Event], None]


def utc_now() -> str:
    """The time conditions and stage entries carry (RFC 3339, seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kopf_event(body: Mapping[str, Any], event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)  # type: ignore[arg-type]


@dataclass
class Context:
    """The client, the cache, the queue, the metrics, the cluster checks and the settings of one operator."""

    kube: Kube
    metrics: Metrics
    cache: Cache = field(default_factory=Cache)
    checks: ClusterChecks = field(default_factory=ClusterChecks)
    interval: float = PROGRESS_INTERVAL
    metrics_port: int = 0  # where startup serves the metrics; 0: nowhere (off, or `run` serves them already)
    ufile_domains: tuple[str, ...] = UFILE_DOMAINS  # the hosts spec.ufile may name (run --ufile-domains)
    ufile_insecure_http: bool = False  # the admin's plain-HTTP opt-in for UFile (run --ufile-insecure-http)
    budget: ApiBudget = field(default_factory=ApiBudget)  # the client's rate limit and the poller's share
    now: Callable[[], str] = utc_now
    post_event: Post = kopf_event
    queue: Queue = field(init=False)
    jobs: JobIndex = field(default_factory=JobIndex)  # our Jobs by training, from our own list and watch
    loop_task: asyncio.Task[None] | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)  # the Jobs watches, the loop-lag probe
    # kopf's context, taken in its first handler call: kopf.event() needs it, and the tasks that ``spawn`` starts
    # from the Jobs watch (started at startup, outside any handler) get a copy of it.
    handler_context: contextvars.Context | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.queue = Queue(self.metrics)
        # The metrics read the cache and the queue at scrape time (nothing to keep in step).
        self.metrics.follow(self.cache.statuses, self.cache.bodies,
                            lambda: self.queue.depth(e for _, e in self.cache.items()))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of its own, in kopf's context (a reference is kept until it ends)."""
        context = self.handler_context.copy() if self.handler_context is not None else None
        task = asyncio.create_task(work, context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settled(self) -> None:
        """Wait until every task ``spawn`` started has ended (tests; cleanup cancels them instead)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def post(self, body: Mapping[str, Any], event: Event, stage: Any, level: int = logging.INFO) -> None:
        """Post an Event about the training, count it as a write, and log it as a line about the training."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        self.post_event(body, event)
        self.metrics.writes.labels(kind="event").inc()
        log.log(level, "%s/%s: %s: %s", namespace, name, event.reason, event.message,
                extra=logs.about(namespace, name, stage, meta.get("generation")))


def of(memo: Mapping[str, Any]) -> Context:
    """The context startup put in the memo (kopf hands every handler a shallow copy of it)."""
    context = memo[MEMO_KEY]
    assert isinstance(context, Context)
    return context
