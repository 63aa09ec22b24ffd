"""metrics.Metrics: trainings by phase, transitions, stage durations."""

from __future__ import annotations

from prometheus_client import generate_latest

from im2txt_operator.metrics import Metrics


def test_metrics_from_events_and_cache() -> None:
    statuses = [{"phase": "Running"}, {"phase": "Running"}, {"phase": "Failed"}, {}]
    m = Metrics(lambda: statuses)
    stage1 = {"stage": 1, "startTime": "2026-11-25T10:00:00Z", "completionTime": "2026-11-25T11:00:00Z"}
    m.record_event("Stage1Started", {"stage": 1})
    m.record_event("Stage2Started", {"stage": 2, "stages": [stage1]})
    m.record_event("Failed", {"stage": 2, "stages": [stage1, {"stage": 2}]})
    text = generate_latest(m.registry).decode()
    assert 'im2txt_trainings{phase="Running"} 2.0' in text
    assert 'im2txt_trainings{phase="Pending"} 1.0' in text and 'im2txt_trainings{phase="Failed"} 1.0' in text
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
