"""metrics.Metrics: trainings by phase, transitions, stage durations."""

from __future__ import annotations

import json
import re

from operator_support import ROOT
from prometheus_client import generate_latest

from im2txt_operator.metrics import CONTROLLER, Metrics


def test_metrics_from_events_and_cache() -> None:
    statuses = [{"phase": "Running"}, {"phase": "Running"}, {"phase": "Failed"}, {}, {"phase": "Queued"}]
    m = Metrics(lambda: statuses)
    stage1 = {"stage": 1, "startTime": "2026-11-25T10:00:00Z", "completionTime": "2026-11-25T11:00:00Z"}
    m.record_event("Stage1Started", {"stage": 1})
    m.record_event("Stage2Started", {"stage": 2, "stages": [stage1]})
    m.record_event("Failed", {"stage": 2, "stages": [stage1, {"stage": 2}]})
    text = generate_latest(m.registry).decode()
    assert 'im2txt_trainings{phase="Running"} 2.0' in text
    assert 'im2txt_trainings{phase="Pending"} 1.0' in text and 'im2txt_trainings{phase="Failed"} 1.0' in text
    assert 'im2txt_trainings{phase="Queued"} 1.0' in text  # waiting for Kueue
    assert 'im2txt_stage_transitions_total{outcome="started",stage="1"} 1.0' in text
    assert 'im2txt_stage_transitions_total{outcome="failed",stage="2"} 1.0' in text
    assert 'im2txt_stage_duration_seconds_sum{stage="1"} 3600.0' in text
    assert 'im2txt_stage_duration_seconds_count{stage="2"}' not in text  # stage 2 has no times yet


def test_loss_gauge_by_training_and_stage_from_the_cache() -> None:
    trainings = [
        {"metadata": {"namespace": "ml", "name": "coco"}, "status": {"stage": 2, "loss": 2.31}},
        {"metadata": {"namespace": "ml", "name": "new"}, "status": {"phase": "Pending"}},  # no loss yet
        {"metadata": {"namespace": "ml", "name": "nan"}, "status": {"stage": 1}},  # diverged: loss removed
    ]
    text = generate_latest(Metrics(list, lambda: trainings).registry).decode()
    assert 'im2txt_training_loss{namespace="ml",stage="2",training="coco"} 2.31' in text
    assert 'training="new"' not in text and 'training="nan"' not in text


def test_controller_runtime_series_count_what_the_operator_does() -> None:
    waiting = [0.0]
    m = Metrics(depth=lambda: waiting[0])
    m.reconciled(0.02, ok=True)
    m.reconciled(0.3, ok=True)
    m.reconciled(1.7, ok=False)
    m.queue_adds.labels(name=CONTROLLER).inc(3)
    m.queue_retries.labels(name=CONTROLLER).inc()
    waiting[0] = 4
    text = generate_latest(m.registry).decode()
    assert 'controller_runtime_reconcile_total{controller="im2txttraining",result="success"} 2.0' in text
    assert 'controller_runtime_reconcile_total{controller="im2txttraining",result="error"} 1.0' in text
    assert 'controller_runtime_reconcile_errors_total{controller="im2txttraining"} 1.0' in text
    assert 'controller_runtime_reconcile_time_seconds_count{controller="im2txttraining"} 3.0' in text
    assert 'controller_runtime_reconcile_time_seconds_bucket{controller="im2txttraining",le="0.025"} 1.0' in text
    assert 'workqueue_depth{name="im2txttraining"} 4.0' in text  # read at scrape time
    assert 'workqueue_adds_total{name="im2txttraining"} 3.0' in text
    assert 'workqueue_retries_total{name="im2txttraining"} 1.0' in text
    assert "im2txt_reconciles_total 2.0" in text and "im2txt_reconcile_errors_total 1.0" in text
    assert "im2txt_leader 0.0" in text


# PromQL words that are not series: functions, aggregations, keywords.
_PROMQL = {"sum", "rate", "increase", "histogram_quantile", "count", "avg", "max", "min"}


def test_every_query_of_the_dashboard_names_a_series_the_operator_exports() -> None:
    dashboard = json.loads((ROOT / "manifests" / "monitoring" / "grafana-dashboard.json").read_text())
    m = Metrics(lambda: [{"phase": "Running"}], lambda: [{"metadata": {"namespace": "ml", "name": "coco"},
                                                          "status": {"stage": 1, "loss": 2.0}}])
    m.reconciled(0.1, ok=True)
    m.record_event("Stage1Started", {"stage": 1})
    m.durations.labels(stage="1").observe(60)
    m.writes.labels(kind="job").inc()
    m.loop_lag.observe(0.002)
    exported = {line.split("{")[0].split(" ")[0] for line in generate_latest(m.registry).decode().splitlines()
                if line and not line.startswith("#")}
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries.append(dashboard["templating"]["list"][1]["query"]["query"])
    assert len(queries) >= 10
    used: set[str] = set()
    for query in queries:
        no_labels = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]|\b(by|without)\s*\([^)]*\)", " ", query)
        names = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", no_labels)
                 if w not in _PROMQL and not w.startswith("label_values")} - {"namespace"}
        assert names, query
        assert names <= exported, (query, names - exported)
        used |= names
        # The controller and queue labels name what the operator exports.
        for label, value in re.findall(r'(controller|name)="([^"]+)"', query):
            assert value == CONTROLLER, (query, label)
    # The dashboard charts each controller-runtime series (a histogram through its buckets).
    assert {"controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
            "controller_runtime_reconcile_time_seconds_bucket", "workqueue_depth", "workqueue_adds_total",
            "workqueue_retries_total", "im2txt_trainings", "im2txt_leader",
            "im2txt_event_loop_lag_seconds_bucket"} <= used, used


def test_metrics_made_before_the_cache_follow_it_once_handed_over() -> None:
    m = Metrics()  # as a standby makes them: served before the operator (and its cache) exist
    assert 'im2txt_trainings{phase="Running"} 0.0' in generate_latest(m.registry).decode()
    m.follow(lambda: [{"phase": "Running"}], lambda: [], lambda: 4)
    text = generate_latest(m.registry).decode()
    assert 'im2txt_trainings{phase="Running"} 1.0' in text and 'workqueue_depth{name="im2txttraining"} 4.0' in text
