"""A status write decided from an old read loses on a real API server (issue 18.7): it carries the resourceVersion
it was decided from, the server answers 409 once someone else wrote the training, and the writer reads it again
instead of writing over what it did not see."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from cluster_support import Api

from im2txt_operator.controller.context import Context
from im2txt_operator.controller.reconcile import _reconcile_locked
from im2txt_operator.kube import Kube
from im2txt_operator.metrics import Metrics

pytestmark = pytest.mark.timeout(120)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0, "suspend": True}
NEWER = "stage 1 not started: written by the replica that leads now"


def _reconcile(kubeconfig: Path, stale: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One reconcile, in this process as the operator's ServiceAccount, from the training as ``stale`` shows it.
    Returns (the events it posted, the training its cache holds afterwards)."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    posted: list[Any] = []

    async def run() -> dict[str, Any]:
        kube = Kube(config)
        try:
            ctx = Context(kube=kube, metrics=Metrics(), post_event=lambda body, event: posted.append(event))
            key = (stale["metadata"]["namespace"], stale["metadata"]["name"])
            entry = ctx.cache.entry(key)
            entry.body = stale
            await _reconcile_locked(ctx, key, entry)
            if entry.retry is not None:
                entry.retry.cancel()
            return entry.body
        finally:
            await kube.close()

    body = asyncio.run(run())
    return len(posted), body


def test_a_status_write_from_a_stale_read_loses_and_reads_again(admin: Api, ns: str,
                                                                operator_kubeconfig: Path) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    stale = admin.new_training(ns, "coco", SPEC)  # what a paused replica read, before anyone wrote status
    # Meanwhile the replica that leads now wrote status.
    admin.merge_patch(admin.trainings(ns, "coco") + "/status", {"status": {
        "phase": "Suspended", "stage": 1, "message": NEWER, "observedGeneration": 1}})
    newer = admin.training(ns, "coco")
    events, cached = _reconcile(operator_kubeconfig, stale)
    # The stale write was refused: status is what the leader wrote, untouched; no Event for a decision not kept.
    assert admin.training(ns, "coco")["metadata"]["resourceVersion"] == newer["metadata"]["resourceVersion"]
    assert admin.status(ns, "coco")["message"] == NEWER and events == 0
    # Read again: the next reconcile starts from the leader's status and writes on its version.
    assert cached["metadata"]["resourceVersion"] == newer["metadata"]["resourceVersion"]
    events, cached = _reconcile(operator_kubeconfig, cached)
    status = admin.status(ns, "coco")
    assert status["message"] == "stage 1 not started: spec.suspend is true" and status["conditions"]
    assert cached["metadata"]["resourceVersion"] == admin.training(ns, "coco")["metadata"]["resourceVersion"]
