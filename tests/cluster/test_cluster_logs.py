"""The operator's log lines on a real API server: with --log-format json every line is one JSON object, and a line
about a training names it in fields, a failed reconcile's included; text stays the default."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fault_proxy import ApiFaultProxy, Seen
from cluster_support import Api, OperatorProcess, kubeconfig_through, wait_for
from control_plane import ControlPlane

pytestmark = pytest.mark.timeout(120)

SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}
# What the API server answers when etcd changes its leader under a write.
LEADER_CHANGED = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError",
                  "message": "etcdserver: leader changed"}


def _training(admin: Api, ns: str) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    admin.new_training(ns, "coco", SPEC)


def _started(op: OperatorProcess, ns: str) -> list[str]:
    return wait_for(lambda: [x for x in op.log.splitlines() if "Stage1Started" in x and ns in x],
                    what="the Stage1Started line", on_timeout=lambda: op.log[-3000:])


def test_json_lines_parse_and_name_the_training(admin: Api, ns: str,
                                                scoped: Callable[..., OperatorProcess]) -> None:
    op = scoped("--log-format=json")
    _training(admin, ns)
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="the stage-1 Job")
    lines = _started(op, ns)
    records = [json.loads(line) for line in op.log.splitlines() if line.strip()]  # every line, kopf's own too
    assert all(isinstance(r, dict) and r.get("message") and r.get("severity") for r in records), op.log
    (started,) = [json.loads(x) for x in lines]
    assert started["object"] == {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "namespace": ns,
                                 "name": "coco"}
    assert (started["namespace"], started["training"], started["stage"], started["generation"]) == (
        ns, "coco", 1, 1), started
    assert started["severity"] == "info" and "timestamp" in started


@pytest.fixture
def proxy(installed: ControlPlane, ns: str) -> Iterator[ApiFaultProxy]:
    """The API server behind a proxy that answers the first create of a Job in ``ns`` with a 500."""
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"

    def first_create(method: str, path: str, name: str, seen: list[Seen]) -> bool:
        return method == "POST" and path == jobs and not any(s.method == "POST" and s.path == jobs for s in seen)

    proxy = ApiFaultProxy(installed.server, installed.pki / "ca.crt", first_create, refusal=LEADER_CHANGED).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_every_line_about_a_training_names_it_its_stage_and_generation(
        installed: ControlPlane, admin: Api, ns: str, operator_kubeconfig: Path, proxy: ApiFaultProxy,
        tmp_path: Path) -> None:
    """A reconcile that fails (the API answers 500 to the Job's create) and its retry: each of the operator's lines
    about the training, the failure's included, is JSON with namespace, training, stage and generation set."""
    through = kubeconfig_through(proxy.url, installed, operator_kubeconfig, tmp_path / "through-proxy.kubeconfig")
    op = OperatorProcess(through, tmp_path / "operator.log", args=("--all-namespaces", "--log-format=json")).start()
    try:
        _training(admin, ns)
        wait_for(lambda: admin.job(ns, "coco-stage1"), timeout=60, what="the stage-1 Job after the retry",
                 on_timeout=lambda: op.log[-3000:])
        assert [s.status for s in proxy.seen if s.method == "POST" and s.name == "coco-stage1"] == [500, 201]
        _started(op, ns)
        records = [json.loads(line) for line in op.log.splitlines() if line.strip()]
        # kopf's lines about it too; the operator serves every namespace, so other tests' trainings are left out.
        ours = [r for r in records if (r.get("object") or {}).get("kind") == "Im2txtTraining"
                and r["object"].get("namespace") == ns]
        assert any(f"reconcile of {ns}/coco failed" in r["message"] for r in ours), op.log[-3000:]
        for r in ours:
            assert (r["namespace"], r["training"], r["stage"], r["generation"]) == (ns, "coco", 1, 1), r
            assert r["object"]["name"] == "coco", r
    finally:
        op.stop()


def test_text_stays_the_default(admin: Api, ns: str, scoped: Callable[..., OperatorProcess]) -> None:
    op = scoped()
    _training(admin, ns)
    line = _started(op, ns)[0]
    assert not line.lstrip().startswith("{") and f"{ns}/coco: Stage1Started" in line
