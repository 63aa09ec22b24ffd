"""A loss that diverged in a stage that ended before the poller looked, on a real API server and Job controller.

A short stage can run out between two looks of the poller: its trainer's termination message (`trainer: reached
global step N: loss = nan (...)`) is then the only place its loss is told, and LossDiverged must come from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import Api, OperatorProcess, still, wait_for

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}


@pytest.fixture
def unpolled(operator_kubeconfig: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator with a poller that first looks an hour after it starts: only the stage's end is seen."""
    op = OperatorProcess(operator_kubeconfig, tmp_path / "operator.log", interval=3600).start()
    try:
        yield op
    finally:
        op.stop()
        print(f"--- operator.log ---\n{op.log[-4000:]}")  # shown when the test fails


def test_a_stage_that_ended_with_a_nan_loss_says_loss_diverged_once(admin: Api, ns: str,
                                                                   unpolled: OperatorProcess) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    admin.new_training(ns, "coco", {**SPEC, "autoAdvance": False})
    pod = wait_for(lambda: next(iter(admin.pods(ns, "coco-stage1")), None), timeout=60, what="the stage-1 pod")
    admin.end_pod(ns, pod, "Succeeded", {"output-check": (0, ""), "trainer": (
        0, "trainer: reached global step 100: loss = nan (0.512 sec/step)")})
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", timeout=60, what="Succeeded")
    status = admin.status(ns, "coco")
    diverged = admin.condition(ns, "coco", "LossDiverged")
    assert (diverged["status"], diverged["reason"]) == ("True", "NonFiniteLoss"), status
    assert diverged["message"].startswith("global step 100: loss = nan: training diverged"), diverged
    assert "loss" not in status and status["step"] == 100, status
    wait_for(lambda: "LossDiverged" in admin.event_reasons(ns, "coco"), what="the LossDiverged Event")
    still(lambda: admin.event_reasons(ns, "coco").count("LossDiverged") == 1, 3)
    warned = [e for e in admin.events(ns, "coco") if e["reason"] == "LossDiverged"]
    assert [(e["type"], e.get("count") or 1) for e in warned] == [("Warning", 1)], warned
