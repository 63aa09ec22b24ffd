"""tools/deploy_check.py: `make deploy` succeeds only when a Ready pod leads and renews the Lease, and fails fast
when a pod cannot run (a crash-looping leader beside a healthy standby included)."""

from __future__ import annotations

from typing import Any

from deploy_check import Verdict, Watch, decide, describe

REVISION = "deployment.kubernetes.io/revision"
DEPLOYMENT = {"metadata": {"generation": 2, "uid": "d-1", "annotations": {REVISION: "2"}}, "spec": {"replicas": 2},
              "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}


def replicaset(template_hash: str, revision: str, owner: str = "d-1") -> dict[str, Any]:
    return {"metadata": {"labels": {"pod-template-hash": template_hash}, "annotations": {REVISION: revision},
                         "ownerReferences": [{"kind": "Deployment", "uid": owner}]}}


SETS = [replicaset("old", "1"), replicaset("new", "2"), replicaset("new", "2", owner="someone-else")]


def pod(name: str, ready: bool = True, restarts: int = 0, waiting: str = "", rs: str = "new") -> dict[str, Any]:
    state = {"waiting": {"reason": waiting, "message": "back-off 20s restarting"}} if waiting else {"running": {}}
    return {"metadata": {"name": name, "labels": {"pod-template-hash": rs}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": "operator", "restartCount": restarts, "state": state,
                                              "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}


def lease(holder: str, renewed: str) -> dict[str, Any]:
    return {"spec": {"holderIdentity": holder, "renewTime": renewed}}


def looks(pods: list[dict[str, Any]], leases: list[dict[str, Any]], deployment: dict[str, Any] = DEPLOYMENT
          ) -> list[Verdict]:
    watch = Watch()
    return [decide(deployment, SETS, pods, one, watch) for one in leases]


def test_ok_only_after_the_ready_holder_renewed_several_times() -> None:
    verdicts = looks([pod("op-a"), pod("op-b")], [lease("op-a", f"t{i}") for i in range(4)])
    assert [v.state for v in verdicts] == ["wait", "wait", "ok", "ok"]
    assert "op-a leads" in verdicts[-1].message


def test_a_leader_that_crash_loops_beside_a_ready_standby_fails_with_its_name() -> None:
    verdicts = looks([pod("op-a", ready=False, restarts=3, waiting="CrashLoopBackOff"), pod("op-b")],
                     [lease("op-a", "t1")])
    assert verdicts[0].state == "fail" and verdicts[0].pod == "op-a"
    assert "CrashLoopBackOff" in verdicts[0].message


def test_a_leader_restarted_between_looks_starts_the_count_again() -> None:
    watch = Watch()
    pods = [pod("op-a"), pod("op-b")]
    decide(DEPLOYMENT, SETS, pods, lease("op-a", "t1"), watch)
    decide(DEPLOYMENT, SETS, pods, lease("op-a", "t2"), watch)
    restarted = [pod("op-a", restarts=1), pod("op-b")]
    assert decide(DEPLOYMENT, SETS, restarted, lease("op-a", "t3"), watch).state == "wait"
    assert decide(DEPLOYMENT, SETS, restarted, lease("op-a", "t4"), watch).state == "wait"
    assert decide(DEPLOYMENT, SETS, restarted, lease("op-a", "t5"), watch).state == "ok"


def test_an_earlier_revisions_crashing_pods_are_waited_out_not_failed() -> None:
    """make deploy of a fix after a broken deploy: the broken pods crash until the rollout replaces them."""
    rolling = {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], "updatedReplicas": 1, "availableReplicas": 1}}
    old = pod("op-a", ready=False, restarts=4, waiting="CrashLoopBackOff", rs="old")
    (verdict,) = looks([old, pod("op-b"), pod("op-c")], [lease("op-a", "t1")], rolling)
    assert verdict.state == "wait" and "1 of 2 updated" in verdict.message, verdict
    # Until the controller has made the new revision's ReplicaSet, nothing is judged.
    unseen = {**DEPLOYMENT, "metadata": {**DEPLOYMENT["metadata"], "annotations": {REVISION: "3"}}}
    (verdict,) = looks([pod("op-b", ready=False, restarts=3, waiting="CrashLoopBackOff")], [lease("", "")], unseen)
    assert verdict.state == "wait" and "ReplicaSet" in verdict.message, verdict


def test_a_missing_image_fails_at_once() -> None:
    (verdict,) = looks([pod("op-a", ready=False, waiting="ErrImageNeverPull")], [lease("", "")])
    assert verdict.state == "fail" and "ErrImageNeverPull" in verdict.message


def test_waits_for_the_rollout_and_for_a_holder_among_its_pods() -> None:
    rolling = {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], "availableReplicas": 1}}
    assert "1 available" in looks([pod("op-a")], [lease("op-a", "t1")], rolling)[0].message
    stale = {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], "observedGeneration": 1}}
    assert looks([pod("op-a")], [lease("op-a", "t1")], stale)[0].state == "wait"
    # The holder is a pod of an earlier Deployment (or a process outside the cluster): not leading yet.
    verdicts = looks([pod("op-a"), pod("op-b")], [lease("laptop_1234", f"t{i}") for i in range(5)])
    assert {v.state for v in verdicts} == {"wait"} and "laptop_1234" in verdicts[-1].message


def test_a_timeout_says_where_each_pod_stands() -> None:
    assert describe(pod("op-a", ready=False, restarts=1, waiting="ContainerCreating")) == (
        "op-a: ?, not Ready; operator=waiting/ContainerCreating restarts=1")
    pending = {"metadata": {"name": "op-b"}, "status": {"phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "said by 'not Ready'"},
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/disk-pressure: }."}]}}
    assert describe(pending) == ("op-b: Pending, not Ready; no container started; PodScheduled=False Unschedulable: "
                                 "0/1 nodes are available: 1 node(s) had untolerated taint "
                                 "{node.kubernetes.io/disk-pressure: }.")
