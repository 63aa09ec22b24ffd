"""--log-format json: every line is one JSON object, and a line about a training names it in fields."""

from __future__ import annotations

import json
from pathlib import Path

from harness import emulator, job, new_training, operator, wait_for


async def test_json_lines_parse_and_name_the_training(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path, args=("--all-namespaces", "--log-format=json")) as op:
        new_training(api, "coco")
        await wait_for(lambda: job(api, "coco-stage1"), what="the stage-1 Job")
        lines = await wait_for(lambda: [x for x in op.lines if "Stage1Started" in x], what="the Stage1Started line")
        records = [json.loads(line) for line in op.lines if line.strip()]  # every line, kopf's own too
        assert all(isinstance(r, dict) and r.get("message") and r.get("severity") for r in records), op.log
        (started,) = [json.loads(x) for x in lines]
        assert started["object"] == {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                     "namespace": "default", "name": "coco"}
        assert (started["namespace"], started["training"], started["stage"], started["generation"]) == (
            "default", "coco", 1, 1), started
        assert started["severity"] == "info" and "timestamp" in started


async def test_text_stays_the_default(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path) as op:
        new_training(api, "coco")
        line = (await wait_for(lambda: [x for x in op.lines if "Stage1Started" in x], what="the line"))[0]
        assert not line.lstrip().startswith("{") and "default/coco: Stage1Started" in line
