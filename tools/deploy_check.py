"""`make deploy`'s wait: succeed once the operator leads, fail fast (with the crash log) when it cannot run.

A Deployment whose leader crash-loops can look healthy: the standby answers its probes, and a pod that is Ready
for a moment between crashes counts as available. So this waits for what users need: the rollout complete, and
the Lease held by a Ready pod of the Deployment that keeps renewing it with no restart meanwhile. It fails at once
when a pod of the current revision cannot start or keeps restarting, and prints that container's last log lines
(an earlier revision's pods are the rollout's to replace: a fix deployed after a broken deploy waits for them).

    python tools/deploy_check.py [--kubectl kubectl] [--namespace im2txt-system] [--timeout 180]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAME = "im2txt-operator"
SELECTOR = "app.kubernetes.io/name=im2txt-operator"
CANNOT_START = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
RESTARTS = 2  # a container restarted this often does not run
REVISION = "deployment.kubernetes.io/revision"
RENEWALS = 3  # renewals of the Lease seen by one holder, unrestarted, before the operator counts as leading


@dataclass
class Verdict:
    state: str  # "wait", "ok" or "fail"
    message: str
    pod: str = ""  # for "fail": the pod whose log tells why


@dataclass
class Watch:
    """What the check remembers between looks: the holder's renewals and its restart count when first seen."""

    holder: str = ""
    renew_times: set[str] = field(default_factory=set)
    restarts: int = 0


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or ())


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def _cannot_run(pod: Mapping[str, Any]) -> str:
    """Why a pod's container cannot run ('' when nothing says so)."""
    for c in (pod.get("status") or {}).get("containerStatuses") or ():
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CANNOT_START:
            return f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
        if int(c.get("restartCount") or 0) >= RESTARTS:
            last = ((c.get("lastState") or {}).get("terminated")) or {}
            return f"restarted {c['restartCount']} times (last exit {last.get('exitCode', '?')}: " \
                   f"{last.get('reason') or 'unknown'})"
    return ""


def describe(pod: Mapping[str, Any]) -> str:
    """One line on where a pod stands: phase, readiness, each container's state and restarts."""
    status = pod.get("status") or {}
    states = []
    for c in status.get("containerStatuses") or ():
        state = c.get("state") or {}
        what = next(iter(state), "unknown")
        reason = (state.get(what) or {}).get("reason") or ""
        states.append(f"{c.get('name')}={what}{'/' + reason if reason else ''} restarts={c.get('restartCount', 0)}")
    # Why a pod is stuck before any container starts: the scheduler's words (e.g. a disk-pressure taint on a full
    # node), which "no container started" alone does not tell.
    stuck = [f"{c.get('type')}={c.get('status')} {c.get('reason') or ''}: {c['message']}"
             for c in status.get("conditions") or ()
             if c.get("status") == "False" and c.get("message") and c.get("type") not in ("Ready", "ContainersReady")]
    return (f"{pod['metadata']['name']}: {status.get('phase', '?')}, {'Ready' if _ready(pod) else 'not Ready'}; "
            + (", ".join(states) or "no container started") + "".join(f"; {why}" for why in stuck))


def current_hash(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]]) -> str:
    """The pod-template-hash of the Deployment's ReplicaSet of its current revision ('' until the controller made
    it)."""
    meta = deployment.get("metadata") or {}
    revision = (meta.get("annotations") or {}).get(REVISION)
    for rs in replicasets:
        rs_meta = rs.get("metadata") or {}
        owned = any(o.get("uid") == meta.get("uid") for o in rs_meta.get("ownerReferences") or ())
        if owned and revision and (rs_meta.get("annotations") or {}).get(REVISION) == revision:
            return str((rs_meta.get("labels") or {}).get("pod-template-hash") or "")
    return ""


def decide(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]],
           pods: Sequence[Mapping[str, Any]], lease: Mapping[str, Any] | None, watch: Watch) -> Verdict:
    """The next step of the wait, from one look at the Deployment, its ReplicaSets, its pods and the Lease (pure
    but for ``watch``)."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration") or 0) < int((deployment.get("metadata") or {}).get("generation") or 0):
        return Verdict("wait", "the Deployment's controller has not seen the new spec yet")
    if not (new := current_hash(deployment, replicasets)):
        return Verdict("wait", "the Deployment's new ReplicaSet is not there yet")
    # Only the new revision's pods: an earlier broken deploy's pods keep crashing until the rollout replaces them.
    for pod in live:
        if ((pod.get("metadata") or {}).get("labels") or {}).get("pod-template-hash") == new and (
                why := _cannot_run(pod)):
            return Verdict("fail", f"pod {pod['metadata']['name']} cannot run: {why}", pod["metadata"]["name"])
    rolled = (int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0))
    if rolled != (want, want) or int(status.get("replicas") or 0) != want:
        return Verdict("wait", f"rollout: {rolled[0]} of {want} updated, {rolled[1]} available")
    lease_spec = (lease or {}).get("spec") or {}
    holder = str(lease_spec.get("holderIdentity") or "")
    by_name = {p["metadata"]["name"]: p for p in live}
    if holder not in by_name:
        watch.holder, watch.renew_times = "", set()
        return Verdict("wait", f"no pod of the Deployment holds the Lease (holder: {holder or 'nobody'})")
    pod = by_name[holder]
    if holder != watch.holder or _restarts(pod) != watch.restarts:
        watch.holder, watch.renew_times, watch.restarts = holder, set(), _restarts(pod)
    watch.renew_times.add(str(lease_spec.get("renewTime")))
    if not _ready(pod):
        return Verdict("wait", f"the leader {holder} is not Ready")
    if len(watch.renew_times) < RENEWALS:
        return Verdict("wait", f"the leader {holder} renewed the Lease {len(watch.renew_times)} of {RENEWALS} times")
    return Verdict("ok", f"{holder} leads and renews the Lease; {want} of {want} replicas available")


def _kubectl(kubectl: str, *args: str) -> str:
    done = subprocess.run([kubectl, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout


def _get(kubectl: str, namespace: str, *what: str) -> Any:
    try:
        return json.loads(_kubectl(kubectl, "-n", namespace, "get", *what, "-o", "json"))
    except RuntimeError as e:
        if "NotFound" in str(e):
            return None
        raise


def crash_log(kubectl: str, namespace: str, pod: str, lines: int = 30) -> str:
    """The pod's last log lines: of the crashed run where there is one, else of the current one."""
    for previous in (("--previous",), ()):
        try:
            text = _kubectl(kubectl, "-n", namespace, "logs", pod, "--all-containers", f"--tail={lines}", *previous)
        except RuntimeError:
            continue
        if text.strip():
            return text
    return "(no log)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--namespace", default="im2txt-system")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    deadline, watch, said = time.monotonic() + args.timeout, Watch(), ""
    while True:
        deployment = _get(args.kubectl, args.namespace, "deployment", NAME) or {}
        replicasets = (_get(args.kubectl, args.namespace, "replicasets", "-l", SELECTOR) or {}).get("items") or []
        pods = (_get(args.kubectl, args.namespace, "pods", "-l", SELECTOR) or {}).get("items") or []
        lease = _get(args.kubectl, args.namespace, "lease", NAME)
        verdict = decide(deployment, replicasets, pods, lease, watch)
        if verdict.state == "ok":
            print(f"deploy: {verdict.message}")
            return 0
        if verdict.state == "fail":
            print(f"deploy: FAILED: {verdict.message}\n--- kubectl logs {verdict.pod} (last lines) ---\n"
                  f"{crash_log(args.kubectl, args.namespace, verdict.pod)}", file=sys.stderr)
            return 1
        if verdict.message != said:
            print(f"deploy: waiting: {verdict.message}", flush=True)
            said = verdict.message
        if time.monotonic() > deadline:
            print(f"deploy: FAILED: not leading after {args.timeout:.0f} s: {verdict.message}", file=sys.stderr)
            for pod in pods:
                print(f"  {describe(pod)}", file=sys.stderr)
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
