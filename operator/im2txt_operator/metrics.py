"""Prometheus metrics (served on :9090/metrics by ``run``; ``--metrics-port 0`` turns them off)."""

from __future__ import annotations

import datetime
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended")
# controller-runtime's names and labels, so dashboards made for Go controllers read this one: the controller and
# its queue are both named after the kind it reconciles.
CONTROLLER = "im2txttraining"
# controller-runtime's reconcile-time buckets (pkg/internal/controller/metrics).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
                     1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # loop_lag.py


class _Phases(Collector):
    """Trainings by phase, read from the operator's cache at scrape time (no bookkeeping to drift)."""

    def __init__(self, statuses: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[Metric]:
        counts = Tally(s.get("phase") or "Pending" for s in self.statuses())
        family = GaugeMetricFamily("im2txt_trainings", "Im2txtTrainings seen by the operator, by phase",
                                   labels=["phase"])
        for phase in PHASES:
            family.add_metric([phase], counts.get(phase, 0))
        yield family


class _Losses(Collector):
    """The trainer's last finite loss per training and stage, from the cached statuses at scrape time."""

    def __init__(self, trainings: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.trainings = trainings

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("im2txt_training_loss", "Total loss the trainer last logged, by training and stage",
                                   labels=["namespace", "training", "stage"])
        for body in self.trainings():
            status, meta = body.get("status") or {}, body.get("metadata") or {}
            loss = status.get("loss")
            if isinstance(loss, int | float) and not isinstance(loss, bool):
                family.add_metric([meta.get("namespace", ""), meta.get("name", ""), str(status.get("stage") or "")],
                                  float(loss))
        yield family


class Metrics:
    def __init__(self, statuses: Callable[[], Iterable[Mapping[str, Any]]] = list,
                 trainings: Callable[[], Iterable[Mapping[str, Any]]] = list,
                 depth: Callable[[], float] = lambda: 0.0) -> None:
        self.registry = CollectorRegistry()
        self._phases, self._losses = _Phases(statuses), _Losses(trainings)
        self.registry.register(self._phases)
        self.registry.register(self._losses)
        self.transitions = Counter("im2txt_stage_transitions", "Stage transitions by stage and outcome",
                                   ["stage", "outcome"], registry=self.registry)
        self.reconciles = Counter("im2txt_reconciles", "Reconciles of a training that completed",
                                  registry=self.registry)
        self.errors = Counter("im2txt_reconcile_errors", "Reconciles that failed (retried with backoff)",
                              registry=self.registry)
        self.writes = Counter("im2txt_api_writes", "API writes made by the operator", ["kind"],
                              registry=self.registry)
        self.durations = Histogram("im2txt_stage_duration_seconds", "Run time of finished stages", ["stage"],
                                   buckets=(60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400,
                                            28 * 86400), registry=self.registry)

        # The controller-runtime series (reconcile_total and reconcile_errors_total count what im2txt_reconciles
        # and im2txt_reconcile_errors count, under the names dashboards chart).
        self.reconcile_total = Counter("controller_runtime_reconcile", "Reconciles by controller and result",
                                       ["controller", "result"], registry=self.registry)
        self.reconcile_errors = Counter("controller_runtime_reconcile_errors", "Reconciles that returned an error",
                                        ["controller"], registry=self.registry)
        self.reconcile_time = Histogram("controller_runtime_reconcile_time_seconds", "Time per reconcile",
                                        ["controller"], buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("workqueue_depth", "Reconciles asked for and not yet started (waiting for the "
                                 "training's lock or a retry's delay)", ["name"], registry=self.registry)
        self.queue_depth.labels(name=CONTROLLER).set_function(depth)
        self.queue_adds = Counter("workqueue_adds", "Reconciles asked for", ["name"], registry=self.registry)
        self.queue_retries = Counter("workqueue_retries", "Reconciles retried after an error", ["name"],
                                     registry=self.registry)
        self.loop_lag = Histogram("im2txt_event_loop_lag_seconds", "How much later than asked the operator's event "
                                  "loop ran a timer: what every event, reconcile and request waited behind other work",
                                  buckets=LAG_BUCKETS, registry=self.registry)
        self.leader = Gauge("im2txt_leader", "1 while this process holds the Lease and runs the operator, 0 while it "
                            "stands by", registry=self.registry)
        for result in ("success", "error"):
            self.reconcile_total.labels(controller=CONTROLLER, result=result)
        self.reconcile_errors.labels(controller=CONTROLLER)
        self.queue_adds.labels(name=CONTROLLER)
        self.queue_retries.labels(name=CONTROLLER)

    def follow(self, statuses: Callable[[], Iterable[Mapping[str, Any]]],
               trainings: Callable[[], Iterable[Mapping[str, Any]]], depth: Callable[[], float]) -> None:
        """Read these from now on: the metrics exist (and are served) before the operator's cache does."""
        self._phases.statuses, self._losses.trainings = statuses, trainings
        self.queue_depth.labels(name=CONTROLLER).set_function(depth)

    def reconciled(self, seconds: float, ok: bool) -> None:
        """One reconcile ended: the im2txt_* and controller-runtime series together."""
        (self.reconciles if ok else self.errors).inc()
        self.reconcile_total.labels(controller=CONTROLLER, result="success" if ok else "error").inc()
        if not ok:
            self.reconcile_errors.labels(controller=CONTROLLER).inc()
        self.reconcile_time.labels(controller=CONTROLLER).observe(seconds)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def record_event(self, reason: str, status: Mapping[str, Any]) -> None:
        """Count a transition from the Event the operator posts for it."""
        stage = str(status.get("stage") or "")
        if reason.startswith("Stage") and reason.endswith("Started"):
            self.transitions.labels(stage=reason[5], outcome="started").inc()
        elif reason in ("Stage2Complete", "StoppedAfterStage1"):
            self.transitions.labels(stage=stage, outcome="succeeded").inc()
        elif reason == "Failed":
            self.transitions.labels(stage=stage, outcome="failed").inc()
        if reason in ("Stage2Started", "Stage2Complete", "StoppedAfterStage1", "Failed"):
            self._observe_durations(status, reason)

    def _observe_durations(self, status: Mapping[str, Any], reason: str) -> None:
        # The stage that just finished: stage 1 when stage 2 starts, else the current one.
        finished = 1 if reason == "Stage2Started" else int(status.get("stage") or 1)
        for entry in status.get("stages") or ():
            if entry.get("stage") == finished and entry.get("startTime") and entry.get("completionTime"):
                seconds = (_time(entry["completionTime"]) - _time(entry["startTime"])).total_seconds()
                self.durations.labels(stage=str(finished)).observe(max(0.0, seconds))


def _time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
