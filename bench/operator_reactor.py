"""The yardstick for the operator benchmark: the least an operator could do (docs/design.md, "Performance
yardsticks").

A raw watch on trainings that creates stage 1's Job when one appears, and a raw watch on our Jobs that
creates stage 2's Job when stage 1's completes. No status, no events, no restart safety. Run as
``python bench/operator_reactor.py SERVER KUBECONFIG NAMESPACE [--writes]`` (the kubeconfig's token and CA).

``--writes``: after each Job, also the two writes the operator makes with it, and nothing else: the training's
status patch (the operator's shape and size: eight conditions, the stage, its Job) and one Event. That is the floor
for a controller that tells its users what it did (``kubectl get``, ``kubectl describe``), where the bare reactor is
the floor for one that tells them nothing.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any

import aiohttp

from im2txt_operator.jobs import Owner, build_job
from im2txt_operator.spec import parse_spec


def _condition(kind: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": 1,
            "lastTransitionTime": now}


def status_of(name: str, stage: int, target: int) -> dict[str, Any]:
    """What the operator's status says once a stage's Job is made (its fields, conditions and sizes)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    job = f"{name}-stage{stage}"
    started = f"stage {stage}: Job {job} trains to global step {target}"
    return {"phase": "Running", "stage": stage, "jobName": job, "target": target, "observedGeneration": 1,
            "message": started, "stages": [{"stage": stage, "jobName": job, "outcome": "Running", "target": target}],
            "conditions": [
                _condition("Ready", "True", "SpecValid", started, now),
                _condition("Stage1Complete", "False", "Running", "stage 1 is running", now),
                _condition("Stage2Complete", "False", "NotStarted", "stage 2 has not started", now),
                _condition("Succeeded", "False", "Running", "phase is Running", now),
                _condition("Failed", "False", "NoFailure", "no Job failed", now),
                _condition("Suspended", "False", "NotSuspended", "spec.suspend is false", now),
                _condition("Reconciling", "True", "Starting", f"{started} (no pod is ready yet)", now),
                _condition("Stalled", "False", "Running", "phase is Running", now)]}


def event_of(ns: str, name: str, uid: str, stage: int, target: int) -> dict[str, Any]:
    """The Event the operator posts when a stage starts (as kopf posts it)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    return {"metadata": {"namespace": ns, "generateName": "kopf-event-"}, "action": "Action",
            "type": "Normal", "reason": f"Stage{stage}Started", "reportingComponent": "im2txt-operator",
            "reportingInstance": "dev", "source": {"component": "im2txt-operator"},
            "message": f"stage {stage}: Job {name}-stage{stage} trains to global step {target}",
            "firstTimestamp": now, "lastTimestamp": now, "eventTime": now,
            "involvedObject": {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "name": name,
                               "uid": uid, "namespace": ns}}


def _refused(code: int, body: bytes) -> None:
    """A write the server refused is said (its log is the bench's), never passed over: the run would measure less."""
    if code >= 300:
        print(f"write refused: {code} {body[:300]!r}", file=sys.stderr, flush=True)


async def main(url: str, kubeconfig: str, namespace: str, writes: bool = False) -> None:
    with open(kubeconfig, encoding="utf-8") as f:
        config = json.load(f)
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=config["clusters"][0]["cluster"]["certificate-authority"])
    trainings = f"/apis/im2txt.dev/v1alpha1/namespaces/{namespace}/im2txttrainings"
    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    specs: dict[tuple[str, str], dict[str, Any]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        async def create(ns: str, name: str, uid: str, stage: int) -> None:
            settings = parse_spec(specs[(ns, name)])
            job = build_job(Owner(name, ns, uid), settings, stage)
            async with session.post(f"{url}/apis/batch/v1/namespaces/{ns}/jobs", json=job) as r:
                await r.read()
            if writes:
                target = settings.target(stage)
                async with session.patch(f"{url}/apis/im2txt.dev/v1alpha1/namespaces/{ns}/im2txttrainings/{name}"
                                         "/status", data=json.dumps({"status": status_of(name, stage, target)}),
                                         headers={"Content-Type": "application/merge-patch+json"}) as r:
                    _refused(r.status, await r.read())
                async with session.post(f"{url}/api/v1/namespaces/{ns}/events",
                                        json=event_of(ns, name, uid, stage, target)) as r:
                    _refused(r.status, await r.read())

        async def watch(path: str, params: dict[str, str], handle: Any) -> None:
            # List, then watch from the list's resourceVersion, as client-go's reflector does. A watch with none is
            # served "not older than now" while the WatchList feature is on: the server waits up to 3 s for its cache
            # of the resource to catch up, and with an etcd that cannot answer progress requests a quiet resource
            # never does. The reactor then missed the warm-up training and the bench timed out.
            rv = ""  # after an ERROR 410, listed again
            while True:
                if not rv:
                    async with session.get(url + path, params=params) as r:
                        listed = await r.json()
                    rv = listed["metadata"]["resourceVersion"]
                    for item in listed["items"]:
                        asyncio.get_running_loop().create_task(handle({"type": "LISTED", "object": item}))
                query = {"watch": "true", "resourceVersion": rv, **params}
                async with session.get(url + path, params=query, timeout=aiohttp.ClientTimeout(total=None)) as r:
                    async for line in r.content:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            print("watch", path, event["object"].get("message"), file=sys.stderr, flush=True)
                            if event["object"].get("code") == 410:
                                rv = ""
                            else:
                                await asyncio.sleep(1)
                            break
                        rv = event["object"]["metadata"]["resourceVersion"]
                        asyncio.get_running_loop().create_task(handle(event))

        async def on_training(event: dict[str, Any]) -> None:
            obj = event["object"]
            meta = obj["metadata"]
            if event["type"] in ("ADDED", "LISTED"):
                specs[(meta["namespace"], meta["name"])] = obj["spec"]
                await create(meta["namespace"], meta["name"], meta["uid"], 1)

        async def on_job(event: dict[str, Any]) -> None:
            obj = event["object"]
            labels = obj["metadata"]["labels"]
            done = any(c["type"] == "Complete" and c["status"] == "True"
                       for c in (obj.get("status") or {}).get("conditions") or ())
            if event["type"] in ("MODIFIED", "LISTED") and done and labels["im2txt.dev/stage"] == "1":
                ref = obj["metadata"]["ownerReferences"][0]
                await create(obj["metadata"]["namespace"], ref["name"], ref["uid"], 2)

        await asyncio.gather(watch(trainings, {}, on_training),
                             watch(jobs, {"labelSelector": "app.kubernetes.io/managed-by=im2txt-operator"}, on_job))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], "--writes" in sys.argv[4:]))
