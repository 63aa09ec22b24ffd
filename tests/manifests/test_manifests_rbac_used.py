"""The operator's RBAC is what its code uses, verb by verb, in both directions (issue 18.8).

"Used" is collected from the code, not written down a second time: every public method of the API client
(`im2txt_operator.kube.Kube`) is called against a recording HTTP server and its request read as the API server's
RequestInfo reads it (group, resource, verb), its watch read to its end; the generic child writes run for every
kind `controller/owned.py` writes (create, read; patch unless `owned.ADOPTED`) and deletes (`owned.REMOVABLE`);
kopf's watches come from the handlers the operator registers (list and watch each), and kopf itself posts core
Events and discovers the CRD. The ClusterRole of manifests/base must grant exactly that set: a verb the code needs
and lacks is refused in production, a verb granted and never used is a right a stolen token has for nothing.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

import kopf
import kubernetes
import pytest
from aiohttp import web
from manifests_support import find, grants
from test_manifests_rbac_live import request_attributes

from im2txt_operator.controller import owned, wiring  # noqa: F401  (wiring registers kopf's handlers)
from im2txt_operator.kube import Kube

# kopf's own requests, beside its handlers' watches: it posts the operator's Events as core v1 Events (POST only,
# kopf._cogs.clients.events) and finds the CRD's version by listing and watching CRDs (kopf's scanning).
KOPF = {("", "events", "create"), ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}
# The Lease of leader election is granted by a Role of its own (test_manifests_rbac: leader election).
LEASE_METHODS = {"get_lease", "create_lease", "replace_lease"}
CHILD = {"metadata": {"namespace": "ml", "name": "coco-x", "uid": "u"}, "spec": {}}
# Arguments for each public method of Kube. A new method fails the test until it is listed here (and so classified).
CALLS: dict[str, tuple[Any, ...]] = {
    "delete_job": ("ml", "coco-stage1", "u"), "list_workloads": ("ml", "u"),
    "get_training": ("ml", "coco"), "training_uids": ("ml",),
    "patch_training_status": ("ml", "coco", {"phase": "Running"}, "1"),
    "claim_exists": ("ml", "data"), "list_pods": ("ml", "coco-stage1"),
    "list_pods_labelled": ("ml", "a=b"), "failed_creates": ("ml", "coco-stage1"),
    "read_log": ("ml", "coco-stage1-x", "trainer", 10), "server_version": (),
    "list_jobs": (None, "a=b"),
}
WATCHES: dict[str, tuple[Any, ...]] = {"watch_jobs": (None, "a=b", "1", 1)}  # async generators: read to their end
GENERIC = {"create", "read", "merge_patch", "delete"}


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[list[tuple[str, str, dict[str, str]]], str]]:
    seen: list[tuple[str, str, dict[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, dict(request.query)))
        return web.Response(text=json.dumps({"items": [], "metadata": {"uid": "u"}}), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield seen, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def _client_uses(host: str, seen: list[tuple[str, str, dict[str, str]]]) -> set[tuple[str, str, str]]:
    config = kubernetes.client.Configuration()
    config.host = host
    kube = Kube(config)
    public = {n for n, f in inspect.getmembers(Kube) if not n.startswith("_")
              and (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f))}
    unlisted = public - set(CALLS) - set(WATCHES) - GENERIC - LEASE_METHODS - {"close"}
    assert not unlisted, f"classify the new Kube methods in CALLS: {sorted(unlisted)}"
    try:
        for name, args in CALLS.items():
            await getattr(kube, name)(*args)
        for name, args in WATCHES.items():
            async for _ in getattr(kube, name)(*args):
                pass
        for kind, (api, plural) in owned.APIS.items():
            await kube.create(api, plural, CHILD)
            await kube.read(api, plural, "ml", "coco-x")
            if kind not in owned.ADOPTED:
                await kube.merge_patch(api, plural, "ml", "coco-x", {"metadata": {"uid": "u"}})
        for kind in owned.REMOVABLE:
            await kube.delete(*owned.APIS[kind], "ml", "coco-x", "u")
    finally:
        await kube.close()
    used = set()
    for method, path, params in seen:
        attrs = request_attributes(method, path, params)
        if attrs is not None:  # /version is no resource: every authenticated user may read it
            used.add(attrs[:3])
    return used


def _kopf_uses() -> set[tuple[str, str, str]]:
    registry = kopf.get_default_registry()
    handlers = [*registry._watching.get_all_handlers(), *registry._indexing.get_all_handlers()]
    return {(h.selector.group or "", h.selector.plural or h.selector.any_name, verb)  # type: ignore[union-attr]
            for h in handlers for verb in ("list", "watch")}


async def test_the_cluster_role_grants_exactly_what_the_code_uses(
        recorder: tuple[list[tuple[str, str, dict[str, str]]], str], base_docs: list[dict[str, Any]]) -> None:
    seen, host = recorder
    used = await _client_uses(host, seen) | _kopf_uses() | KOPF
    granted = {(g, r, v) for (g, r), verbs in grants(find(base_docs, "ClusterRole", "im2txt-operator")["rules"]).items()
               for v in verbs}
    assert sorted(used - granted) == [], f"used but not granted: {sorted(used - granted)}"
    assert sorted(granted - used) == [], f"granted but never used: {sorted(granted - used)}"
