"""--log-format json: every line is one JSON object, and a line about a training names it in fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import emulator, job, new_training, operator, wait_for
from kmock import KubernetesError


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


async def test_every_line_about_a_training_names_it_its_stage_and_generation(tmp_path: Path) -> None:
    """A reconcile that fails (the API answers 500 to the Job's create) and its retry: each of the operator's lines
    about the training, the failure's included, is JSON with namespace, training, stage and generation set."""
    failed: list[str] = []

    def first_create_fails(request: Any) -> KubernetesError | None:
        if request.method == "POST" and request.url.path.endswith("/jobs") and not failed:
            failed.append(request.url.path)
            return KubernetesError(status=500, reason="InternalError", message="etcdserver: leader changed")
        return None

    async with emulator(tmp_path) as api, operator(api, tmp_path, args=("--all-namespaces", "--log-format=json")) as op:
        api.faults.append(first_create_fails)
        new_training(api, "coco")
        await wait_for(lambda: job(api, "coco-stage1"), what="the stage-1 Job after the retry")
        await wait_for(lambda: [x for x in op.lines if "Stage1Started" in x], what="the Stage1Started line")
        records = [json.loads(line) for line in op.lines if line.strip()]
        ours = [r for r in records if (r.get("object") or {}).get("kind") == "Im2txtTraining"]  # kopf's too
        assert any("reconcile of default/coco failed" in r["message"] for r in ours), op.log
        for r in ours:
            assert (r["namespace"], r["training"], r["stage"], r["generation"]) == ("default", "coco", 1, 1), r
            assert r["object"]["namespace"] == "default" and r["object"]["name"] == "coco", r


async def test_text_stays_the_default(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api, operator(api, tmp_path) as op:
        new_training(api, "coco")
        line = (await wait_for(lambda: [x for x in op.lines if "Stage1Started" in x], what="the line"))[0]
        assert not line.lstrip().startswith("{") and "default/coco: Stage1Started" in line
