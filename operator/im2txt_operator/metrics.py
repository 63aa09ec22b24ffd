"""Prometheus metrics (served on :9090/metrics by ``run``; ``--metrics-port 0`` turns them off)."""

from __future__ import annotations

import datetime
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")


class _Phases(Collector):
    """Trainings by phase, read from the operator's cache at scrape time (no bookkeeping to drift)."""

    def __init__(self, statuses: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[Metric]:
        counts = Tally(s.get("phase") or "Pending" for s in self._statuses())
        family = GaugeMetricFamily("im2txt_trainings", "Im2txtTrainings seen by the operator, by phase",
                                   labels=["phase"])
        for phase in PHASES:
            family.add_metric([phase], counts.get(phase, 0))
        yield family


class _Losses(Collector):
    """The trainer's last finite loss per training and stage, from the cached statuses at scrape time."""

    def __init__(self, trainings: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._trainings = trainings

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("im2txt_training_loss", "Total loss the trainer last logged, by training and stage",
                                   labels=["namespace", "training", "stage"])
        for body in self._trainings():
            status, meta = body.get("status") or {}, body.get("metadata") or {}
            loss = status.get("loss")
            if isinstance(loss, int | float) and not isinstance(loss, bool):
                family.add_metric([meta.get("namespace", ""), meta.get("name", ""), str(status.get("stage") or "")],
                                  float(loss))
        yield family


class Metrics:
    def __init__(self, statuses: Callable[[], Iterable[Mapping[str, Any]]] = list,
                 trainings: Callable[[], Iterable[Mapping[str, Any]]] = list) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Phases(statuses))
        self.registry.register(_Losses(trainings))
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
