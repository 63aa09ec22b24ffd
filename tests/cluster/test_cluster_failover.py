"""Two operators, one acting: leader election on a Lease, and a standby that takes over from a SIGKILLed leader
mid-stage and between stages with no duplicate Job, no skipped or repeated stage and no duplicate Event."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from cluster_support import OPERATOR_NS, Api, OperatorProcess, Replicas, wait_for

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
