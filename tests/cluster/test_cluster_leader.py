"""What a leader-elected operator process says and answers on a real API server: a restarted leader says it took its
own Lease back and its probes log nothing; a standby serves /metrics too and says it is not leading; and the client
of a leader whose time is up sends no write at all."""

from __future__ import annotations

import asyncio
import time

import kubernetes
import pytest
import requests
from cluster_support import OPERATOR_NS, Api, Replicas, wait_for
from control_plane import ControlPlane

from im2txt_operator.api_errors import Fenced
from im2txt_operator.kube import Kube
from im2txt_operator.leader import claimed, holder, micro_time

pytestmark = pytest.mark.timeout(120)

LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases"
LEASE = f"{LEASES}/im2txt-operator"  # the one name manifests/base/leader-election.yaml lets the operator update
# controller-runtime's series with their labels, as a dashboard made for Go controllers queries them.
CONTROLLER_RUNTIME = ('controller_runtime_reconcile_total{controller="im2txttraining",result="success"}',
                      'controller_runtime_reconcile_total{controller="im2txttraining",result="error"}',
                      'controller_runtime_reconcile_errors_total{controller="im2txttraining"}',
                      'workqueue_depth{name="im2txttraining"}', 'workqueue_adds_total{name="im2txttraining"}',
                      'workqueue_retries_total{name="im2txttraining"}')


def _answer(url: str, expected: int) -> str:
    def answered() -> str | None:
        try:
            r = requests.get(url, timeout=5)
        except requests.ConnectionError:
            return None  # not listening yet
        return r.text if r.status_code == expected else None

    return wait_for(answered, timeout=20, what=f"{url} answering {expected}")


def test_a_restarted_leader_says_it_took_its_lease_back_and_its_probes_log_nothing(admin: Api,
                                                                                    replicas: Replicas) -> None:
    # What a SIGKILLed container leaves: the Lease still names the pod, whose restarted container has its name.
    lease = claimed(admin.get(LEASE), "im2txt-operator", "op-0", 8.0, micro_time())
    if admin.get(LEASE) is None:
        admin.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease})
    else:
        admin.request("PUT", LEASE, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease})
    _, op = replicas.start("op-0", probes=True)
    line = wait_for(lambda: [x for x in op.log.splitlines() if "became the leader" in x], what="the leader line")
    assert f"took the Lease {OPERATOR_NS}/im2txt-operator back" in line[0] and "op-0" in line[0], op.log
    _answer(op.liveness, 200)
    for _ in range(5):
        assert requests.get(op.liveness, timeout=5).status_code == 200
    time.sleep(1.0)
    assert not [x for x in op.log.splitlines() if "/healthz" in x or "aiohttp.access" in x], op.log


def test_the_standby_serves_metrics_too_and_says_it_is_not_leading(admin: Api, ns: str, replicas: Replicas) -> None:
    """A PodMonitor scrapes every replica: the standby answers /metrics (im2txt_leader 0), the leader says 1 and
    counts its reconciles under controller-runtime's names."""
    _, leader = replicas.start("op-0", probes=True)
    wait_for(lambda: "became the leader" in leader.log, what="op-0 leads")
    _, standby = replicas.start("op-1", probes=True)
    wait_for(lambda: f"standby: Lease {OPERATOR_NS}/im2txt-operator is held by 'op-0'" in standby.log,
             what="the standby's line", on_timeout=lambda: standby.log[-2000:])
    text = _answer(f"http://127.0.0.1:{standby.metrics_port}/metrics", 200)
    assert "im2txt_leader 0.0" in text, text
    for series in CONTROLLER_RUNTIME:  # a dashboard shows the standby at 0, not "no data"
        assert f"{series} 0.0" in text, (series, text)
    for claim in ("d", "o"):
        admin.claim(ns, claim)
    admin.new_training(ns, "coco", {"dataPath": "pvc://d/", "outputPath": "pvc://o/", "gpus": 0})
    wait_for(lambda: admin.status(ns, "coco").get("phase"), what="the leader's reconcile of the training")
    url = f"http://127.0.0.1:{leader.metrics_port}/metrics"
    text = wait_for(lambda: (t := requests.get(url, timeout=5).text) and 'result="success"} 0.0' not in t and t,
                    what="a reconcile counted")
    assert "im2txt_leader 1.0" in text
    timed = 'controller_runtime_reconcile_time_seconds_count{controller="im2txttraining"}'
    for series in (*CONTROLLER_RUNTIME, timed):
        assert f"\n{series} " in text, (series, text)
    assert "im2txt_leader 0.0" in requests.get(f"http://127.0.0.1:{standby.metrics_port}/metrics", timeout=5).text


def test_a_fenced_client_sends_no_write_once_the_time_is_up(installed: ControlPlane, admin: Api, ns: str) -> None:
    """Every write of the operator's client is fenced by the time left on its Lease: at zero it is refused before it
    is sent, and the server keeps what it had; reads still work."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(installed.kubeconfig_path), client_configuration=config)
    left = [5.0]

    async def run() -> str:
        kube = Kube(config, fence=lambda: left[0])
        try:
            created = await kube.create_lease(ns, claimed(None, "l", "pod-a", 8.0, micro_time()))
            left[0] = 0.0
            # A replace that the server would take (on the version it has), were it sent.
            with pytest.raises(Fenced, match=r"PUT \S+ not sent"):
                await kube.replace_lease(ns, claimed(await kube.get_lease(ns, "l"), "l", "pod-b", 8.0, micro_time()))
            return str(created["metadata"]["resourceVersion"])
        finally:
            await kube.close()

    version = asyncio.run(run())
    lease = admin.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l") or {}
    assert (holder(lease), lease["metadata"]["resourceVersion"]) == ("pod-a", version)  # nothing was written
