"""The Kubernetes versions the operator runs on, against a real API server's /version (issue 24.5).

On a supported minor (1.29 to 1.36) the operator says which version it found and works; below 1.29 it refuses:
one log line and a 503 on its health endpoint (the Deployment's readiness and liveness probe) say why, and it
watches and writes nothing. `make test-k8s-versions` runs this file on a real 1.28 API server as well
(tools/envtest/kube-1.28), and the whole tier on 1.29 and 1.36. On any server, a fault proxy answers /version with
versions this tier has no server of (1.28.15, a managed cluster's v1.29.3-eks-1234) to a leader-elected operator.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from api_fault_proxy import ApiFaultProxy
from cluster_support import OPERATOR_NS, Api, OperatorProcess, kubeconfig_through, still, wait_for
from control_plane import ControlPlane, free_port

pytestmark = pytest.mark.timeout(180)

PVC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "gpus": 0}


def answer(url: str) -> tuple[int, str] | None:
    try:
        r = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None  # not listening (yet)
    return r.status_code, r.text


def test_the_operator_runs_on_a_supported_minor_and_refuses_an_older_one(
        admin: Api, ns: str, operator_kubeconfig: Path, tmp_path: Path) -> None:
    version = admin.request("GET", "/version")
    minor = admin.minor()
    health = f"http://127.0.0.1:{free_port()}/healthz"
    op = OperatorProcess(operator_kubeconfig, tmp_path / "operator.log", liveness=health,
                         started=("Kubernetes v1.",))  # the version line, refused or not
    op.start()
    try:
        for claim in ("coco-data", "runs"):
            admin.claim(ns, claim)
        admin.new_training(ns, "coco", PVC)
        if minor < 29:
            said = wait_for(lambda: (a := answer(health)) and a[0] == 503 and a, what="a 503 from the health endpoint")
            assert said[1].startswith(f"not starting: Kubernetes {version['gitVersion']} is older than 1.29, the "
                                      "oldest this operator supports (supported: 1.29 to 1.36)"), said
            assert "restartPolicy: Always" in said[1] and "Upgrade the control plane" in said[1], said
            # It waits (re-reading the version), it does not crash-loop; nothing is watched or written.
            still(lambda: op.proc is not None and op.proc.poll() is None and admin.job_names(ns) == []
                  and not admin.training(ns, "coco").get("status") and answer(health) == said, 5)
            assert op.log.count("not starting: Kubernetes") == 1, op.log
        else:
            assert f"Kubernetes {version['gitVersion']} (supported: 1.29 to 1.36)" in op.log, op.log
            wait_for(lambda: (a := answer(health)) and a[0] == 200, what="a 200 from the health endpoint")
            wait_for(lambda: admin.job_names(ns) == ["coco-stage1"], what="the stage-1 Job")
            # The status patch follows the Job's create in the same reconcile: wait for it, not a moment.
            wait_for(lambda: admin.status(ns, "coco").get("observedGeneration") == 1, what="the status written")
            assert "not starting" not in op.log
    finally:
        op.stop()


def test_a_kubernetes_older_than_1_29_is_refused_with_the_reason_and_a_503(
        installed: ControlPlane, operator_kubeconfig: Path, tmp_path: Path) -> None:
    """A leader-elected operator on 1.28 claims no Lease and writes nothing; on a managed 1.29 it leads."""
    health = f"http://127.0.0.1:{free_port()}/healthz"
    elected = ("--all-namespaces", "--leader-elect", "--identity=op-0", f"--lease-namespace={OPERATOR_NS}")
    with ApiFaultProxy(installed.server, installed.pki / "ca.crt",
                    version={"major": "1", "minor": "28", "gitVersion": "v1.28.15"}) as proxy:
        through = kubeconfig_through(proxy.url, installed, operator_kubeconfig, tmp_path / "through.kubeconfig")
        op = OperatorProcess(through, tmp_path / "old.log", args=elected, liveness=health,
                             started=("Kubernetes v1.",)).start()
        try:
            said = wait_for(lambda: (a := answer(health)) and a[0] == 503 and a, what="a 503 from the health endpoint")
            assert said[1].startswith("not starting: Kubernetes v1.28.15 is older than 1.29, the oldest this "
                                      "operator supports (supported: 1.29 to 1.36)"), said
            assert "restartPolicy: Always" in said[1]  # why: the checkpoint sidecar would be dropped
            assert op.log.count("not starting: Kubernetes v1.28.15") == 1, op.log
            time.sleep(1.0)
            assert "/version" in [s.path for s in proxy.seen], proxy.seen  # the answer came from the proxy
            assert proxy.writes() == [], proxy.writes()  # no Lease claimed, nothing written
            assert op.proc is not None and op.proc.poll() is None  # it waits (re-reading the version), no crash loop
        finally:
            op.stop()
        proxy.version = {"major": "1", "minor": "29+", "gitVersion": "v1.29.3-eks-1234"}  # a managed cluster's
        op = OperatorProcess(through, tmp_path / "managed.log", args=elected, liveness=health,
                             started=("became the leader",)).start()
        try:
            assert "Kubernetes v1.29.3-eks-1234 (supported: 1.29 to 1.36)" in op.log, op.log
            wait_for(lambda: (a := answer(health)) and a[0] == 200, what="a 200 from the health endpoint")
        finally:
            op.stop()  # SIGTERM: the Lease is released for the next test
