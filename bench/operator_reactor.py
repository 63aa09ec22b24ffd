"""The yardstick for the operator benchmark: the least an operator could do (docs/design.md, "Performance
yardsticks").

A raw watch on trainings that creates stage 1's Job when one appears, and a raw watch on our Jobs that
creates stage 2's Job when stage 1's completes. No status, no events, no restart safety. Run as
``python bench/operator_reactor.py SERVER KUBECONFIG NAMESPACE`` (the kubeconfig's token and CA).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

import aiohttp

from im2txt_operator.jobs import Owner, build_job
from im2txt_operator.spec import parse_spec


async def main(url: str, kubeconfig: str, namespace: str) -> None:
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
            job = build_job(Owner(name, ns, uid), parse_spec(specs[(ns, name)]), stage)
            async with session.post(f"{url}/apis/batch/v1/namespaces/{ns}/jobs", json=job) as r:
                await r.read()

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
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
