"""Two operators, one acting: leader election on a Lease, and a standby that takes over from a SIGKILLed leader
mid-stage and between stages with no duplicate Job, no skipped or repeated stage and no duplicate Event; a leader
frozen past its Lease (its API answers slowed by a fault proxy at chosen moments) writes nothing when it thaws."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from api_fault_proxy import ApiFaultProxy, Delay
from cluster_support import OPERATOR_NS, Api, OperatorProcess, Replicas, kubeconfig_through, wait_for
from control_plane import ControlPlane

pytestmark = pytest.mark.timeout(300)

LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases/im2txt-operator"
SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0}
TAKEOVER_LIMIT = 15.0


def _holder(admin: Api) -> str:
    return ((admin.get(LEASE) or {}).get("spec") or {}).get("holderIdentity") or ""


def _kill_and_time_takeover(admin: Api, leader: OperatorProcess, successor: str, new: OperatorProcess) -> float:
    assert leader.proc is not None
    killed = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait(10)
    wait_for(lambda: _holder(admin) == successor, timeout=TAKEOVER_LIMIT + 5, what=f"{successor} to hold the Lease")
    wait_for(lambda: "Initial authentication has finished" in new.log, timeout=TAKEOVER_LIMIT + 5,
             what=f"{successor} to run the operator")
    return time.monotonic() - killed


def test_a_standby_takes_over_mid_stage_and_between_stages(admin: Api, ns: str, replicas: Replicas) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    first, a = replicas.start()
    wait_for(lambda: _holder(admin) == first, what="the first replica to lead")
    second, b = replicas.start()
    assert "standby: Lease" in b.log
    admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="the stage-1 Job")
    wait_for(lambda: "Stage1Started" in admin.event_reasons(ns, "coco"), what="Stage1Started")
    time.sleep(2)
    assert "Stage1Started" not in b.log and "Initial authentication" not in b.log  # the standby did nothing

    # 1. The leader dies mid-stage.
    mid_stage = _kill_and_time_takeover(admin, a, second, b)
    assert mid_stage < TAKEOVER_LIMIT, mid_stage
    third, c = replicas.start()
    assert "standby: Lease" in c.log

    # 2. The leader dies between stages: frozen (SIGSTOP) before it sees stage 1 succeed, then killed.
    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGSTOP)
    wait_for(lambda: [p for p in admin.pods(ns, "coco-stage1") if p["status"].get("phase") == "Pending"],
             what="the stage-1 pod")
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: any(c["type"] == "Complete" and c["status"] == "True" for c in
                         (admin.job(ns, "coco-stage1") or {}).get("status", {}).get("conditions") or ()),
             what="stage 1 complete")
    assert admin.job(ns, "coco-stage2") is None
    between = _kill_and_time_takeover(admin, b, third, c)
    assert between < TAKEOVER_LIMIT, between
    wait_for(lambda: admin.job(ns, "coco-stage2"), what="stage 2 started by the new leader")
    wait_for(lambda: [p for p in admin.pods(ns, "coco-stage2") if p["status"].get("phase") == "Pending"],
             what="the stage-2 pod")
    admin.finish_pods(ns, "coco-stage2")
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", what="Succeeded")
    wait_for(lambda: "ExportStarted" in admin.event_reasons(ns, "coco"), what="the last Event")
    time.sleep(2)
    assert admin.event_reasons(ns, "coco") == ["Stage1Started", "Stage2Started", "Stage2Complete", "ExportStarted"]
    assert admin.job_names(ns) == ["coco-export", "coco-stage1", "coco-stage2"]
    assert [s["outcome"] for s in admin.status(ns, "coco")["stages"]] == ["Succeeded", "Succeeded"]
    print(f"takeover after SIGKILL: mid-stage {mid_stage:.1f} s, between stages {between:.1f} s")

    # 3. A clean stop (SIGTERM, a rolling update) releases the Lease: the next replica takes over at once.
    fourth, _ = replicas.start()
    released = time.monotonic()
    c.stop()
    wait_for(lambda: _holder(admin) == fourth, timeout=10, what="the Lease handed over on SIGTERM")
    handover = time.monotonic() - released
    assert handover < 5, handover
    print(f"takeover after SIGTERM: {handover:.1f} s")


def _complete(admin: Api, ns: str, job: str) -> bool:
    return any(c["type"] == "Complete" and c["status"] == "True"
               for c in ((admin.job(ns, job) or {}).get("status") or {}).get("conditions") or ())


@pytest.mark.timeout(180)
def test_a_leader_frozen_past_its_lease_writes_nothing_when_it_thaws(
        installed: ControlPlane, admin: Api, ns: str, operator_kubeconfig: Path, replicas: Replicas,
        tmp_path: Path) -> None:
    """The leader is frozen (SIGSTOP) in the middle of a reconcile, past its Lease; the standby takes over and
    advances the training a stage; SIGCONT: the thawed process holds a decision made on what it read before, and
    must not write it (every write is fenced by the time left on its Lease). It steps down. The leader talks to the
    API server through a fault proxy, whose log of forwarded requests says what reached the server."""
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    with ApiFaultProxy(installed.server, installed.pki / "ca.crt") as proxy:
        through = kubeconfig_through(proxy.url, installed, operator_kubeconfig, tmp_path / "op-0.kubeconfig")
        _, old = replicas.start("op-0", probes=True, kubeconfig=through)
        assert old.proc is not None
        wait_for(lambda: _holder(admin) == "op-0", what="op-0 leads")
        _, new = replicas.start("op-1", probes=True)
        assert "standby: Lease" in new.log
        admin.new_training(ns, "coco", {**SPEC, "autoAdvance": True})
        wait_for(lambda: admin.pods(ns, "coco-stage1"), what="stage 1's pod")
        # A slow pod list: the stage's end is read from its pods (a list sent once op-0 sees the Job complete)
        # before the status patch, so op-0 is caught between reading and writing when it is frozen.
        proxy.delays.append(Delay("/pods", 10.0))
        admin.finish_pods(ns, "coco-stage1")
        wait_for(lambda: _complete(admin, ns, "coco-stage1"), what="stage 1 complete")
        time.sleep(1.0)  # op-0 has the Job's event and waits for its pods
        old.proc.send_signal(signal.SIGSTOP)
        try:
            assert admin.status(ns, "coco").get("stage") == 1, "op-0 wrote stage 1's end before it was frozen"
            wait_for(lambda: _holder(admin) == "op-1" and "became the leader" in new.log, timeout=30,
                     what="op-1 takes over")
            wait_for(lambda: admin.job(ns, "coco-stage2") and admin.status(ns, "coco").get("stage") == 2,
                     timeout=30, what="op-1 starts stage 2")
            proxy.delays.clear()
            # The thawed op-0 learns only after 2 s that it lost the Lease: time enough to write.
            proxy.delays.append(Delay("/leases", 2.0))
            thawed = time.monotonic()
        finally:
            old.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: old.proc is not None and old.proc.poll() is not None, timeout=20,
                 what="the thawed op-0 to exit")
        time.sleep(0.5)  # what op-0 sent before it exited has reached the proxy
        written = [s for s in proxy.writes(since=thawed) if "/leases" not in s.path]
        assert written == [], (written, old.log[-4000:])
        # Which guard stops it depends on what the thawed loop runs first: the renewal loop, which sees no time
        # left and exits, or a reconcile, whose write the client refuses (test_leader.py proves each).
        assert old.proc.returncode == 1 and ("lost the Lease" in old.log or "could not renew" in old.log), old.log
