"""The one smoke test of the API emulator that `make demo` runs on: the real operator process takes a training
through both stages and its export, progress read from the emulator's pod log. Every controller scenario lives
on the real API server tier (tests/cluster/); this only shows that the demo's stand-in still carries the operator."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import (
    complete_job,
    condition,
    emulator,
    event_reasons,
    job,
    jobs,
    new_training,
    operator,
    start_pod,
    wait_for,
)
from harness import status as status_of

from im2txt_operator.jobs import command_line
from im2txt_operator.spec import parse_spec

pytestmark = pytest.mark.timeout(120)


def _command(api, name: str) -> str:  # type: ignore[no-untyped-def]
    trainer = job(api, name)["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    return " ".join(trainer["command"] + trainer["args"])


async def test_the_demos_path_two_stages_and_the_export_on_the_emulator(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path):
        created = new_training(api, "coco")
        settings = parse_spec(created["spec"])
        await wait_for(lambda: job(api, "coco-stage1"), what="stage-1 Job")
        assert _command(api, "coco-stage1") == command_line(settings, 1)
        await wait_for(lambda: status_of(api, "coco").get("phase") == "Running", what="Running")

        # Step progress from the trainer's log, as the demo's kubelet stand-in serves it.
        start_pod(api, "coco-stage1", "global step 10: loss = 5.1 (0.50 sec/step)\n"
                                      "global step 40: loss = 2.3 (0.50 sec/step)\n")
        await wait_for(lambda: status_of(api, "coco").get("step") == 40, what="step 40")
        status = status_of(api, "coco")
        assert (status["progress"], status["eta"], status["loss"]) == (40.0, "30s", 2.3)

        complete_job(api, "coco-stage1")
        await wait_for(lambda: job(api, "coco-stage2"), what="stage-2 Job")
        assert _command(api, "coco-stage2") == command_line(settings, 2)
        await wait_for(lambda: status_of(api, "coco").get("stage") == 2, what="stage 2 in status")
        complete_job(api, "coco-stage2")
        await wait_for(lambda: status_of(api, "coco").get("phase") == "Succeeded", what="Succeeded")
        assert condition(api, "coco", "Succeeded")["status"] == "True"
        assert [s["outcome"] for s in status_of(api, "coco")["stages"]] == ["Succeeded", "Succeeded"]

        await wait_for(lambda: job(api, "coco-export"), what="the export Job")
        complete_job(api, "coco-export")
        await wait_for(lambda: (status_of(api, "coco").get("export") or {}).get("phase") == "Succeeded",
                       what="exported")
        assert status_of(api, "coco")["export"]["path"] == "pvc://runs/coco/export/"
        await wait_for(lambda: "Exported" in event_reasons(api, "coco"), what="the Exported Event")
        assert event_reasons(api, "coco") == ["Stage1Started", "Stage2Started", "Stage2Complete", "ExportStarted",
                                              "Exported"]
        assert jobs(api) == ["coco-export", "coco-stage1", "coco-stage2"]
