"""The operator under API Priority and Fairness pressure, on the real API server: a proxy answers 429 with a
Retry-After to the first create of every Job and to every other status patch (api_fault_proxy). Nothing is created
twice, nothing is lost, and every retry waits the Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fault_proxy import ApiFaultProxy, Seen
from cluster_support import Api, OperatorProcess, kubeconfig_through, wait_for
from control_plane import ControlPlane

pytestmark = pytest.mark.timeout(240)

SPEC: dict[str, Any] = {"numberOfSteps": 100, "stage2NumberOfSteps": 300, "gpus": 0, "export": False,
                        "dataPath": "pvc://coco-data/mscoco/"}
TRAININGS = ("a", "b", "c")


def _throttle(method: str, path: str, name: str, seen: list[Seen]) -> bool:
    if method == "POST" and path.endswith("/jobs"):
        return not any(s.name == name for s in seen)  # the first create of each Job
    if method == "PATCH" and path.endswith("/status"):
        return sum(1 for s in seen if s.method == "PATCH" and s.path == path) % 2 == 0  # every other patch
    return False


@pytest.fixture
def proxy(installed: ControlPlane) -> Iterator[ApiFaultProxy]:
    proxy = ApiFaultProxy(installed.server, installed.pki / "ca.crt", _throttle).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_429_storm_creates_nothing_twice_loses_nothing_and_waits_its_retry_after(
        installed: ControlPlane, admin: Api, ns: str, operator_kubeconfig: Path, proxy: ApiFaultProxy,
        tmp_path: Path) -> None:
    through = kubeconfig_through(proxy.url, installed, operator_kubeconfig, tmp_path / "through-proxy.kubeconfig")
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    op = OperatorProcess(through, tmp_path / "operator.log").start()
    try:
        for name in TRAININGS:
            admin.new_training(ns, name, {**SPEC, "outputPath": f"pvc://runs/{name}/"})
        for name in TRAININGS:
            wait_for(lambda n=name: admin.status(ns, n).get("phase") == "Running", what=f"{name} Running")
            wait_for(lambda n=name: admin.pods(ns, f"{n}-stage1"), what=f"{name}'s stage-1 pod")
            admin.finish_pods(ns, f"{name}-stage1")
        for name in TRAININGS:
            wait_for(lambda n=name: admin.pods(ns, f"{n}-stage2"), what=f"{name}'s stage-2 pod")
            admin.finish_pods(ns, f"{name}-stage2")
        for name in TRAININGS:
            wait_for(lambda n=name: admin.status(ns, n).get("phase") == "Succeeded", what=f"{name} Succeeded")
            status = admin.status(ns, name)
            assert [s["outcome"] for s in status["stages"]] == ["Succeeded", "Succeeded"], status
            assert status["step"] == 300
        assert admin.job_names(ns) == sorted(f"{n}-stage{s}" for n in TRAININGS for s in (1, 2))
        for job in admin.job_names(ns):
            posts = [s for s in proxy.seen if s.method == "POST" and s.name == job]
            assert [s.status for s in posts] == [429, 201], (job, posts)  # refused once, then created once
            assert posts[1].at - posts[0].at >= 0.95, (job, posts)  # after the Retry-After, not before
        patches = [s for s in proxy.seen if s.method == "PATCH" and s.path.endswith("/status")]
        assert sum(s.status == 429 for s in patches) >= len(TRAININGS) * 2  # the storm did happen
        # The client absorbed every 429 itself: no reconcile of these trainings failed and went to the backoff
        # queue (the operator serves all namespaces: other tests' trainings in namespaces being deleted may fail).
        assert f"reconcile of {ns}/" not in op.log and "Traceback" not in op.log, op.log[-3000:]
    finally:
        op.stop()
