"""children.desired: every child by role, the one list both render and reconcile use."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import HERE

from im2txt_operator import children
from im2txt_operator.children import desired, role_of
from im2txt_operator.cli import render
from im2txt_operator.pods import Owner
from im2txt_operator.spec import SpecError, parse_spec

OWNER = Owner("coco", "ml", "uid-1")
BASE = {"dataPath": "pvc://data/", "outputPath": "pvc://out/"}


def _kinds(made: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {role: [f"{o['kind']}/{o['metadata']['name']}" for o in objects] for role, objects in made.items()}


def test_roles_follow_the_spec() -> None:
    assert _kinds(desired(OWNER, parse_spec(BASE))) == {
        "stage1": ["Job/coco-stage1"], "stage2": ["Job/coco-stage2"], "export": ["Job/coco-export"],
        "evaluation": ["Deployment/coco-evaluation"]}  # on by default
    off = {"evaluation": {"enabled": False}}
    assert _kinds(desired(OWNER, parse_spec({**BASE, **off, "autoAdvance": False, "tensorboard": {"enabled": True}}))
                  ) == {"stage1": ["Job/coco-stage1"],
                        "tensorboard": ["Deployment/coco-tensorboard", "Service/coco-tensorboard"]}
    # A stage that ran stays a child (autoAdvance turned off after stage 2 started), and the export with it.
    assert list(desired(OWNER, parse_spec({**BASE, **off, "autoAdvance": False}), ran=(2,))) == [
        "stage1", "stage2", "export"]
    assert _kinds(desired(OWNER, parse_spec({**BASE, **off, "stage": 2, "numNodes": 2, "export": False}))) == {
        "stage2": ["Service/coco-stage2", "NetworkPolicy/coco-stage2", "Job/coco-stage2"]}  # the Job last


def test_every_child_carries_its_role_and_the_owner() -> None:
    spec = {**BASE, "numNodes": 2, "tensorboard": {"enabled": True}}
    for role, objects in desired(OWNER, parse_spec(spec)).items():
        for obj in objects:
            assert obj["metadata"]["labels"]["im2txt.dev/role"] == role
            assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
            pod = obj["spec"].get("template")
            if pod is not None:
                assert pod["metadata"]["labels"]["im2txt.dev/role"] == role
    objects = [o for objects in desired(OWNER, parse_spec(BASE)).values() for o in objects]
    # Only Jobs carry im2txt.dev/stage: the evaluation Deployment is no stage's.
    assert [role_of(o["metadata"]["labels"]) for o in objects] == ["stage1", "stage2", "export", None]
    assert role_of({"im2txt.dev/stage": "3"}) is None


def test_a_name_too_long_for_any_child_is_refused() -> None:
    with pytest.raises(SpecError) as e:
        desired(Owner("n" * 52, "ml", "u"), parse_spec(BASE))
    assert e.value.field == "metadata.name"


def test_render_prints_exactly_the_desired_children(tmp_path: Path) -> None:
    example = HERE / "data" / "training-full.yaml"
    training = yaml.safe_load(example.read_text())
    out = io.StringIO()
    assert render([str(example)], out) == 0
    owner = Owner(training["metadata"]["name"], training["metadata"]["namespace"], "<uid of the training>")
    expected = [o for objects in desired(owner, parse_spec(training["spec"])).values() for o in objects]
    assert list(yaml.safe_load_all(out.getvalue())) == expected


def test_a_multi_node_stage_admits_only_its_own_workers_to_their_port() -> None:
    owner = Owner(name="coco", namespace="ml", uid="u1")
    service, policy, job = desired(owner, parse_spec({**BASE, "numNodes": 2, "stage": 2}))["stage2"]
    workers = {"batch.kubernetes.io/job-name": "coco-stage2"}
    assert service["spec"]["selector"] == workers  # the same pods the Service names
    assert policy["spec"] == {"podSelector": {"matchLabels": workers}, "policyTypes": ["Ingress"],
                              "ingress": [{"from": [{"podSelector": {"matchLabels": workers}}],
                                           "ports": [{"port": 2222, "protocol": "TCP"}]}]}
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert job["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 2222


def test_a_role_is_built_only_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconcile asks for one role at a time: the others' manifests are not built for nothing."""
    built: list[str] = []
    real = children.export.build_job
    monkeypatch.setattr(children.export, "build_job", lambda *a: built.append("export") or real(*a))
    made = desired(OWNER, parse_spec(BASE))
    assert made["stage1"][0]["metadata"]["name"] == "coco-stage1" and "export" in made and built == []
    assert made["export"] is made["export"] and built == ["export"]
