"""controller.context: one Context per operator, found in the memo; its Events are counted and logged as lines
about the training; the metrics read its cache and queue."""

from __future__ import annotations

import logging
import re

import kopf
import pytest
from fake_kube import FakeKube, context, training
from prometheus_client import generate_latest

from im2txt_operator.controller import context as contexts
from im2txt_operator.decisions import Event


def test_the_memo_holds_the_context() -> None:
    ctx, _ = context(FakeKube())
    assert contexts.of(kopf.Memo(context=ctx)) is ctx
    with pytest.raises(KeyError):
        contexts.of(kopf.Memo())


def test_post_sends_counts_and_logs_the_event(caplog: pytest.LogCaptureFixture) -> None:
    ctx, events = context(FakeKube())
    body = training()
    with caplog.at_level(logging.INFO, logger="im2txt_operator"):
        ctx.post(body, Event("Warning", "LossDiverged", "global step 5: loss = nan"), 2, logging.WARNING)
    assert events == [("coco", "Warning", "LossDiverged")]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "ml/coco: LossDiverged: global step 5: loss = nan"
    fields = {k: getattr(record, k) for k in ("training", "namespace", "stage", "generation")}
    assert fields == {"training": "coco", "namespace": "ml", "stage": 2, "generation": 1}
    assert 'im2txt_api_writes_total{kind="event"} 1.0' in generate_latest(ctx.metrics.registry).decode()


def test_the_metrics_read_the_cache_and_the_queue_at_scrape_time() -> None:
    ctx, _ = context(FakeKube())
    ctx.cache.entry(("ml", "coco")).body = training(status={"phase": "Running", "stage": 1, "loss": 2.5})
    ctx.queue.waiting = 2
    text = generate_latest(ctx.metrics.registry).decode()
    assert 'im2txt_trainings{phase="Running"} 1.0' in text
    assert 'im2txt_training_loss{namespace="ml",stage="1",training="coco"} 2.5' in text
    assert 'workqueue_depth{name="im2txttraining"} 2.0' in text


def test_utc_now_is_rfc3339_in_seconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", contexts.utc_now())
