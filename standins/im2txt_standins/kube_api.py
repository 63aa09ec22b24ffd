"""An in-memory Kubernetes API server for tests and the demo, on kmock (by kopf's author).

kmock gives the HTTP server, request parsing and the request log, API discovery from declared resources,
and Kubernetes-style error bodies. kmock's own object store (``KubernetesEmulator``) lacks what an operator
relies on (docs/design.md, "How we test"), so this module keeps its own store behind kmock's server and serves resource
paths itself, faithfully to the real API server where the operator can tell the difference:

- metadata: uid, resourceVersion (one global counter, like etcd revisions), generation (bumped on spec
  changes only), creationTimestamp, generateName;
- 409 AlreadyExists on create, 409 Conflict on a stale resourceVersion (PUT, or a patch that carries one);
- status as a subresource: writes to ``/status`` change only status, writes to the object ignore status;
- JSON merge patch, strategic merge patch (as merge patch: enough for our objects), JSON patch with a
  failed ``test`` answering 422 (kopf relies on that), 415 for server-side apply;
- a Job's ``spec.template`` is immutable (422), like the real Job API;
- list with labelSelector/fieldSelector and a list resourceVersion; watch that replays only the events after
  the given resourceVersion (or synthetic ADDED events without one), honours timeoutSeconds and filters;
- deletion with finalizers/deletionTimestamp, propagationPolicy Background/Foreground/Orphan, and a
  garbage collector that deletes dependents (ownerReferences) whose owners are all gone;
- CRD objects register their resource for discovery; namespaces are objects (created on first use), listed
  and watched like any other (kmock cannot parse ``/api/v1/namespaces``, so that path is served directly);
- pods, and ``pods/{name}/log`` (with tailLines) whose text tests set with ``set_log``.

Not covered: admission webhooks, OpenAPI schema validation/defaulting (tests validate against the CRD
schema separately), the built-in types' validation (a Job the real API answers with 422 is created here),
field managers, server-side apply, authentication (any bearer token is accepted). Of a CRD's own validation,
only what once let a broken CRD through is checked (its ``metadata`` schema). Behaviour that depends on
what is not covered is tested on the real control plane (tests/cluster) and nowhere else.

Use from Python: ``async with KubeAPI.running(kubeconfig=path) as api: ...`` (``api.url``), or from a shell:
``python -m im2txt_standins.kube_api --port 8001 --kubeconfig /tmp/kubeconfig``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock import KubernetesError

# (group, version, plural) -> discovery info. Core group is "".
Res = tuple[str, str, str]

BUILTIN: dict[Res, dict[str, Any]] = {
    ("", "v1", "namespaces"): {"kind": "Namespace", "namespaced": False, "sub": (), "shortNames": ("ns",)},
    ("", "v1", "pods"): {"kind": "Pod", "namespaced": True, "sub": ("status", "log"), "shortNames": ("po",)},
    ("", "v1", "secrets"): {"kind": "Secret", "namespaced": True, "sub": ()},
    ("", "v1", "persistentvolumeclaims"): {"kind": "PersistentVolumeClaim", "namespaced": True, "sub": ("status",),
                                           "shortNames": ("pvc",)},
    ("", "v1", "events"): {"kind": "Event", "namespaced": True, "sub": (), "shortNames": ("ev",)},
    ("events.k8s.io", "v1", "events"): {"kind": "Event", "namespaced": True, "sub": ()},
    ("batch", "v1", "jobs"): {"kind": "Job", "namespaced": True, "sub": ("status",)},
    ("coordination.k8s.io", "v1", "leases"): {"kind": "Lease", "namespaced": True, "sub": ()},
    ("apps", "v1", "deployments"): {"kind": "Deployment", "namespaced": True, "sub": ("status",)},
    ("", "v1", "services"): {"kind": "Service", "namespaced": True, "sub": ()},
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"):
        {"kind": "CustomResourceDefinition", "namespaced": False, "sub": ("status",), "shortNames": ("crd", "crds")},
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_PATH = re.compile(
    r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?"
)
_NAMESPACES = re.compile(r"/api/v1/namespaces/?")


def _clone(obj: Any) -> Any:
    """Deep copy of JSON data (several times faster than copy.deepcopy)."""
    return json.loads(json.dumps(obj))


def _age(timestamp: str) -> str:
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(0, seconds)}s"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str, **details: Any) -> KubernetesError:
    return KubernetesError(status=status, reason=reason, message=message, details=details or {})


def check_crd_metadata_schema(crd: Mapping[str, Any]) -> None:
    """The real API server's rule for a CRD's ``metadata`` schema: at most ``type: object`` and restrictions of
    name/generateName (an emulator once accepted a ``description`` there that every real cluster refuses)."""
    for i, version in enumerate((crd.get("spec") or {}).get("versions") or ()):
        schema = ((version.get("schema") or {}).get("openAPIV3Schema") or {})
        meta = (schema.get("properties") or {}).get("metadata")
        if meta is None:
            continue
        extra = sorted(set(meta) - {"type", "properties"}) + sorted(
            set(meta.get("properties") or {}) - {"name", "generateName"})
        if extra or meta.get("type", "object") != "object":
            raise _error(422, "Invalid", f"CustomResourceDefinition {crd.get('metadata', {}).get('name')!r} is "
                         f"invalid: spec.versions[{i}].schema.openAPIV3Schema.properties[metadata]: Forbidden: must "
                         "not specify anything other than name and generateName, but metadata is implicitly "
                         "specified")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return _clone(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _split_selector(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*parts, cur] if p.strip()]


def label_matcher(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """Equality- and set-based label selectors, as kubectl and the client libraries send them."""
    if not selector:
        return lambda labels: True
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_selector(selector):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",")}
            if op == "in":
                tests.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif term.startswith("!"):
            negated = term[1:].strip()
            tests.append(lambda lb, k=negated: k not in lb)
        else:
            tests.append(lambda lb, k=term: k in lb)
    return lambda labels: all(t(labels) for t in tests)


def field_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    if not selector:
        return lambda obj: True
    tests = []
    for term in _split_selector(selector):
        neg = "!=" in term
        path, value = (s.strip() for s in re.split(r"!=|==|=", term, maxsplit=1))

        def get(obj: Mapping[str, Any], path: str = path) -> Any:
            cur: Any = obj
            for part in path.split("."):
                cur = cur.get(part) if isinstance(cur, Mapping) else None
            return cur

        tests.append(lambda obj, g=get, v=value, n=neg: (str(g(obj)) != v) if n else (str(g(obj)) == v))
    return lambda obj: all(t(obj) for t in tests)


@attrs.define(kw_only=True)
class KubeAPI(kmock.KubernetesScaffold):
    """The emulator. Tests may read and change ``objects`` through the methods below (they emit events)."""

    _kinds: dict[Res, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _objects: dict[tuple[Res, str | None, str], dict[str, Any]] = attrs.field(factory=dict, init=False)
    # (resourceVersion, resource, object, the serialised watch event): objects in the store are replaced,
    # never changed in place, so events can share them; each event is serialised once for all watchers.
    _events: list[tuple[int, Res, dict[str, Any], bytes]] = attrs.field(factory=list, init=False)
    _event_rvs: list[int] = attrs.field(factory=list, init=False)
    _changed: asyncio.Event | None = attrs.field(default=None, init=False)
    _revision: int = attrs.field(default=1000, init=False)
    logs: dict[tuple[str, str, str], str] = attrs.field(factory=dict, init=False)
    created_at: dict[tuple[Res, str | None, str], float] = attrs.field(factory=dict, init=False)
    faults: list[Callable[[kmock.Request], KubernetesError | None]] = attrs.field(factory=list, init=False)
    # GET /version, as a real API server answers it.
    version: dict[str, str] = attrs.field(factory=lambda: {"major": "1", "minor": "36", "gitVersion": "v1.36.3"},
                                          init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for res, info in BUILTIN.items():
            self._declare(res, info)
        for namespace in ("default", "kube-system"):
            self._ensure_namespace(namespace)

    # ---------------------------------------------------------------- resources and discovery
    def _declare(self, res: Res, info: dict[str, Any]) -> None:
        self._kinds[res] = info
        self.resources[kmock.resource(*res)] = kmock.ResourceInfo(
            kind=info["kind"], namespaced=info["namespaced"], verbs=VERBS, subresources=list(info["sub"]),
            singular=info.get("singular") or info["kind"].lower(), shortnames=info.get("shortNames", ()),
            categories=info.get("categories", ()))

    async def _serve_version(self, request: kmock.Request) -> Any:
        # Subresources get no short names or categories (else kubectl warns that "i2t" is ambiguous).
        payload = await super()._serve_version(request)
        if payload.get("groupVersion", "").startswith("/"):
            payload["groupVersion"] = payload["groupVersion"][1:]  # the core group is "v1", not "/v1"
        for entry in payload.get("resources", ()):
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], singularName="")
        return payload

    def add_crd(self, crd: Mapping[str, Any] | str | Path) -> dict[str, Any]:
        """Install a CustomResourceDefinition (a dict, YAML text or file): stored and discoverable."""
        if isinstance(crd, Path) or (isinstance(crd, str) and "\n" not in crd):
            crd = Path(crd).read_text()
        if isinstance(crd, str):
            crd = yaml.safe_load(crd)
        res = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        check_crd_metadata_schema(crd)
        obj = self._store_create(res, None, dict(crd))
        self._declare_crd(obj)
        return obj

    def _declare_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            self._declare((spec["group"], version["name"], names["plural"]), {
                "kind": names["kind"], "namespaced": spec.get("scope") == "Namespaced",
                "sub": tuple(version.get("subresources") or ()), "singular": names.get("singular"),
                "shortNames": names.get("shortNames", ()), "categories": names.get("categories", ()),
                "columns": version.get("additionalPrinterColumns") or ()})

    # ---------------------------------------------------------------- the store
    def _bump(self) -> int:
        self._revision += 1
        return self._revision

    def _emit(self, res: Res, type_: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"]) if type_ != "DELETED" else self._revision
        line = json.dumps({"type": type_, "object": obj}).encode() + b"\n"
        self._events.append((rv, res, obj, line))
        self._event_rvs.append(rv)
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def get_object(self, res: Res, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self._objects.get((res, namespace, name))
        return _clone(obj) if obj is not None else None

    def list_objects(self, res: Res, namespace: str | None = None) -> list[dict[str, Any]]:
        return [_clone(o) for (r, ns, _), o in self._objects.items()
                if r == res and (namespace is None or ns == namespace)]

    def _store_create(self, res: Res, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        info = self._kinds[res]
        obj = _clone(obj)
        meta = obj.setdefault("metadata", {})
        if info["namespaced"]:
            namespace = namespace or meta.get("namespace") or "default"
            meta["namespace"] = namespace
        else:
            namespace = None
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        key = (res, namespace, meta["name"])
        if key in self._objects:
            raise _error(409, "AlreadyExists", f'{res[2]} "{meta["name"]}" already exists',
                         name=meta["name"], kind=res[2])
        if "status" in info["sub"]:
            obj.pop("status", None)  # status comes only through the status subresource
        if info["kind"] == "Job":
            obj.setdefault("spec", {}).setdefault("suspend", False)
            obj["spec"].setdefault("backoffLimit", 6)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=str(self._bump()))
        if "spec" in obj or info["kind"] not in ("Event",):
            meta["generation"] = 1
        self._objects[key] = obj
        if namespace:
            self._ensure_namespace(namespace)
        self.created_at[key] = time.monotonic()
        self._emit(res, "ADDED", obj)
        owners = {r.get("uid") for r in meta.get("ownerReferences") or ()}
        if owners and not any(o["metadata"]["uid"] in owners for o in self._objects.values()):
            self._collect_orphan(key)  # its owners are gone: the garbage collector deletes it
        return _clone(obj)

    def _collect_orphan(self, key: tuple[Res, str | None, str]) -> None:
        def sweep() -> None:
            if key in self._objects:
                self._store_delete(key[0], key, "Background")

        try:
            asyncio.get_running_loop().call_soon(sweep)
        except RuntimeError:
            sweep()

    def _store_replace(self, res: Res, key: tuple[Res, str | None, str], new: dict[str, Any],
                       *, status_only: bool) -> dict[str, Any]:
        old = self._objects[key]
        info = self._kinds[res]
        new = _clone(new)
        if status_only:
            merged = _clone(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif "status" in info["sub"]:
            if "status" in old:
                new["status"] = _clone(old["status"])
            else:
                new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        if info["kind"] == "Job" and new.get("spec", {}).get("template") != old.get("spec", {}).get("template"):
            raise _error(422, "Invalid", f'Job.batch "{key[2]}" is invalid: spec.template: Invalid value: '
                         "field is immutable", name=key[2], kind="Job")
        if new == old:
            return _clone(old)  # a no-op write does not change resourceVersion, like the real server
        spec_changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")}
        if spec_changed and "generation" in meta:
            meta["generation"] = int(meta["generation"]) + 1
        meta["resourceVersion"] = str(self._bump())
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._objects[key]
            self._emit(res, "DELETED", new)
            self._collect_garbage(meta["uid"])
            return _clone(new)
        self._objects[key] = new
        self._emit(res, "MODIFIED", new)
        return _clone(new)

    def _store_delete(self, res: Res, key: tuple[Res, str | None, str], policy: str | None) -> dict[str, Any]:
        obj = self._objects[key]
        meta = obj["metadata"]
        if policy == "Orphan":
            self._orphan(meta["uid"])
        if policy == "Foreground":
            self._delete_dependents(meta["uid"])
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                new = _clone(obj)
                new["metadata"]["deletionTimestamp"] = _now()
                new["metadata"]["resourceVersion"] = str(self._bump())
                self._objects[key] = new
                self._emit(res, "MODIFIED", new)
            return _clone(self._objects[key])
        del self._objects[key]
        gone = _clone(obj)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        self._emit(res, "DELETED", gone)
        if policy != "Orphan":
            self._collect_garbage(meta["uid"])
        return gone

    # ---------------------------------------------------------------- garbage collection
    def _dependents(self, uid: str) -> list[tuple[Res, str | None, str]]:
        return [k for k, o in self._objects.items()
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or ())]

    def _orphan(self, uid: str) -> None:
        for key in self._dependents(uid):
            obj = _clone(self._objects[key])
            obj["metadata"]["ownerReferences"] = [
                r for r in obj["metadata"]["ownerReferences"] if r.get("uid") != uid] or None
            if obj["metadata"]["ownerReferences"] is None:
                del obj["metadata"]["ownerReferences"]
            obj["metadata"]["resourceVersion"] = str(self._bump())
            self._objects[key] = obj
            self._emit(key[0], "MODIFIED", obj)

    def _delete_dependents(self, uid: str) -> None:
        for key in self._dependents(uid):
            if key in self._objects:
                self._store_delete(key[0], key, "Background")

    def _collect_garbage(self, uid: str) -> None:
        """Background propagation: dependents whose owners are all gone are deleted (soon after)."""
        live = {o["metadata"]["uid"] for o in self._objects.values()}

        def sweep() -> None:
            for key in self._dependents(uid):
                if key not in self._objects:
                    continue
                owners = {r.get("uid") for r in self._objects[key]["metadata"].get("ownerReferences") or ()}
                if not owners & live:
                    self._store_delete(key[0], key, "Background")

        try:
            asyncio.get_running_loop().call_soon(sweep)
        except RuntimeError:
            sweep()

    # ---------------------------------------------------------------- helpers for tests (the Job controller's part)
    def create_object(self, res: Res, obj: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self._store_create(res, namespace, dict(obj))

    def patch_object(self, res: Res, namespace: str | None, name: str, patch: Mapping[str, Any], *,
              status: bool = False) -> dict[str, Any]:
        key = (res, namespace, name)
        if key not in self._objects:
            raise _error(404, "NotFound", f'{res[2]} "{name}" not found')
        return self._store_replace(res, key, merge_patch(self._objects[key], patch), status_only=status)

    def delete_object(self, res: Res, namespace: str | None, name: str, policy: str | None = None) -> dict[str, Any]:
        return self._store_delete(res, (res, namespace, name), policy)

    def set_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        self.logs[(namespace, pod, container)] = text

    # ---------------------------------------------------------------- HTTP
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "GET" and raw_request.path == "/version":
            return aiohttp.web.json_response(self.version)
        # kmock cannot parse /api/v1/namespaces (no name after "namespaces"): list and watch it here.
        if raw_request.method == "GET" and _NAMESPACES.fullmatch(raw_request.path):
            res = ("", "v1", "namespaces")
            params = dict(raw_request.query)
            if params.get("watch") in ("true", "1"):
                return await self._watch(raw_request, params, res, None)
            return aiohttp.web.json_response(self._list(res, None, params))
        return await super().__call__(raw_request)

    def _ensure_namespace(self, namespace: str) -> None:
        """Namespaces appear as objects (created on first use: no admission plugin refuses unknown ones)."""
        key = (("", "v1", "namespaces"), None, namespace)
        if key not in self._objects:
            self._store_create(key[0], None, {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": namespace}, "status": {"phase": "Active"}})

    @staticmethod
    def _status(e: KubernetesError) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                          "code": e.status, "reason": e.reason, "message": e.message,
                                          "details": e.details or {}}, status=e.status)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        m = _PATH.fullmatch(request.url.path)
        if m is None or (m["plural"] == "namespaces" and not m["name"]):
            return await super()._handle(request)  # discovery, /version, ...
        res: Res = ("", "v1", m["plural"]) if m["cv"] else (m["g"], m["v"], m["plural"])
        if res == ("events.k8s.io", "v1", "events"):
            res = ("", "v1", "events")  # one store behind both event APIs, as on a real server
        if res not in self._kinds:
            return await super()._handle(request)
        for fault in self.faults:
            if (err := fault(request)) is not None:
                return self._status(err)
        try:
            return await self._serve(request, res, m["ns"], m["name"], m["sub"])
        except KubernetesError as e:
            return self._status(e)

    async def _serve(self, request: kmock.Request, res: Res, namespace: str | None, name: str | None,
                     sub: str | None) -> aiohttp.web.StreamResponse:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        params = request.params
        info = self._kinds[res]
        if not info["namespaced"]:
            namespace = None
        if name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                assert request._raw_request is not None  # kmock keeps aiohttp's request here
                return await self._watch(request._raw_request, params, res, namespace)
            if method == "GET":
                listing = self._list(res, namespace, params)
                if self._wants_table(request):
                    return aiohttp.web.json_response(self._table(res, listing["items"], listing["metadata"]))
                return aiohttp.web.json_response(listing)
            if method == "POST":
                body = self._body(request)
                if res[2] == "customresourcedefinitions":
                    check_crd_metadata_schema(body)
                obj = self._store_create(res, namespace, body)
                if res[2] == "customresourcedefinitions":
                    self._declare_crd(obj)
                return aiohttp.web.json_response(obj, status=201)
            raise _error(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        key = (res, namespace, name)
        if sub == "log" and res == ("", "v1", "pods"):
            return self._log(namespace or "default", name, params)
        if sub not in (None, "status") or (sub == "status" and "status" not in info["sub"]):
            raise _error(404, "NotFound", f"the server could not find the requested resource ({sub})")
        if key not in self._objects:
            raise _error(404, "NotFound", f'{res[2]} "{name}" not found', name=name, kind=res[2])
        current = self._objects[key]
        if method == "GET":
            if self._wants_table(request) and sub is None:
                return aiohttp.web.json_response(self._table(res, [current], {}))
            return aiohttp.web.json_response(current)
        if method == "DELETE":
            body = self._body(request, required=False) or {}
            policy = params.get("propagationPolicy") or body.get("propagationPolicy")
            return aiohttp.web.json_response(self._store_delete(res, key, policy))
        if method == "PUT":
            new = self._body(request)
            self._check_rv(new, current, key, required=True)
            return aiohttp.web.json_response(self._store_replace(res, key, new, status_only=sub == "status"))
        if method == "PATCH":
            new = self._apply_patch(request, current)
            self._check_rv(new, current, key, required=False)
            return aiohttp.web.json_response(self._store_replace(res, key, new, status_only=sub == "status"))
        raise _error(405, "MethodNotAllowed", f"{method} is not supported")

    @staticmethod
    def _wants_table(request: kmock.Request) -> bool:
        accept = {k.lower(): v for k, v in request.headers.items()}.get("accept", "")
        return "as=Table" in accept

    def _table(self, res: Res, items: list[dict[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side printing for ``kubectl get``: Name, the CRD's printer columns (else Age)."""
        columns = list(self._kinds[res].get("columns") or ()) or [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        rows = []
        for obj in items:
            cells: list[Any] = [obj["metadata"]["name"]]
            for col in columns:
                value: Any = obj
                for part in col["jsonPath"].strip(".").split("."):
                    value = value.get(part) if isinstance(value, Mapping) else None
                if col["type"] == "date" and isinstance(value, str):
                    value = _age(value)
                cells.append(value)
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                    "metadata": obj["metadata"]}})
        definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
        definitions += [{"name": c["name"], "type": c["type"] if c["type"] != "date" else "string", "format": "",
                         "description": c.get("description", ""), "priority": c.get("priority", 0)}
                        for c in columns]
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": dict(meta),
                "columnDefinitions": definitions, "rows": rows}

    @staticmethod
    def _body(request: kmock.Request, required: bool = True) -> Any:
        try:
            return json.loads(request.body) if request.body else None
        except ValueError:
            if required:
                raise _error(400, "BadRequest", "the request body is not JSON") from None
            return None

    @staticmethod
    def _check_rv(new: Mapping[str, Any], current: Mapping[str, Any], key: tuple[Res, str | None, str],
                  required: bool) -> None:
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv is None and not required:
            return
        if rv != current["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", f'Operation cannot be fulfilled on {key[0][2]} "{key[2]}": the object '
                         "has been modified; please apply your changes to the latest version and try again",
                         name=key[2], kind=key[0][2])

    def _apply_patch(self, request: kmock.Request, current: dict[str, Any]) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        ctype = (headers.get("content-type") or "").split(";")[0].strip()
        body = self._body(request)
        if ctype == "application/json-patch+json":
            try:
                return jsonpatch.apply_patch(_clone(current), body)
            except jsonpatch.JsonPatchTestFailed as e:
                raise _error(422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
                             ) from None
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise _error(422, "Invalid", str(e)) from None
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            patched = merge_patch(current, body)
            if (body.get("metadata") or {}).get("resourceVersion") is None:
                patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return patched
        raise _error(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")

    def _selected(self, res: Res, namespace: str | None, params: Mapping[str, str]
                  ) -> Callable[[Res, Mapping[str, Any]], bool]:
        labels = label_matcher(params.get("labelSelector"))
        fields = field_matcher(params.get("fieldSelector"))

        def ok(r: Res, obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            return (r == res and (namespace is None or meta.get("namespace") == namespace)
                    and labels(meta.get("labels") or {}) and fields(obj))

        return ok

    def _list(self, res: Res, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        ok = self._selected(res, namespace, params)
        ordered = sorted(self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
        items = [dict(o) for (r, _, _), o in ordered if ok(r, o)]  # shallow: only top-level keys are added
        kind = self._kinds[res]["kind"]
        api_version = f"{res[0]}/{res[1]}" if res[0] else res[1]
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return {"apiVersion": api_version, "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self._revision)}, "items": items}

    async def _watch(self, raw: aiohttp.web.BaseRequest, params: Mapping[str, str], res: Res,
                     namespace: str | None) -> aiohttp.web.StreamResponse:
        ok = self._selected(res, namespace, params)
        since = params.get("resourceVersion") or ""
        timeout = float(params.get("timeoutSeconds") or 0) or None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        if self._changed is None:
            self._changed = asyncio.Event()
        if since in ("", "0"):
            # No resourceVersion: synthetic ADDED events for what exists now, then what happens next.
            start = len(self._events)
            initial = [{"type": "ADDED", "object": o} for (r, _, _), o in self._objects.items() if ok(r, o)]
        else:
            try:
                start = bisect.bisect_right(self._event_rvs, int(since))
            except ValueError:
                raise _error(400, "BadRequest", f"invalid resourceVersion {since!r}") from None
            initial = []
        deadline = time.monotonic() + timeout if timeout else None
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            for event in initial:
                await response.write(json.dumps(event).encode() + b"\n")
            index = start
            while True:
                while index < len(self._events):
                    _, r, obj, line = self._events[index]
                    index += 1
                    if ok(r, obj):
                        await response.write(line)
                changed = self._changed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    break
            await response.write_eof()
        return response

    def _log(self, namespace: str, pod: str, params: Mapping[str, str]) -> aiohttp.web.Response:
        obj = self._objects.get((("", "v1", "pods"), namespace, pod))
        if obj is None:
            raise _error(404, "NotFound", f'pods "{pod}" not found', name=pod, kind="pods")
        spec = obj.get("spec") or {}
        containers = [c["name"] for c in spec.get("containers") or ()]
        container = params.get("container") or (containers[0] if len(containers) == 1 else None)
        if container is None:
            raise _error(400, "BadRequest", f"a container name must be specified for pod {pod}")
        if containers and container not in containers + [c["name"] for c in spec.get("initContainers") or ()]:
            raise _error(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        text = self.logs.get((namespace, pod, container), "")
        tail = params.get("tailLines")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        return aiohttp.web.Response(text=text, content_type="text/plain")

    # ---------------------------------------------------------------- running
    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, *, port: int | None = None, kubeconfig: str | Path | None = None,
                      crds: Iterable[str | Path | Mapping[str, Any]] = ()) -> AsyncIterator[KubeAPI]:
        """Serve on 127.0.0.1 (a free port unless given); write a kubeconfig for it when asked."""
        api = cls()
        for crd in crds:
            api.add_crd(crd)
        async with api, kmock.Server(api, port=port) as server:
            api.url = str(server.url).rstrip("/")
            if kubeconfig is not None:
                write_kubeconfig(kubeconfig, api.url)
            yield api

    url: str = attrs.field(default="", init=False)


def write_kubeconfig(path: str | Path, server: str) -> Path:
    """A kubeconfig pointing at the emulator. (The kubernetes client reads $KUBECONFIG at import time, so
    processes that use it must get KUBECONFIG in their environment before they start.)"""
    path = Path(path)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                      "namespace": "default"}}],
    }))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m im2txt_standins.kube_api",
                                     description="In-memory Kubernetes API emulator (tests and demo only).")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the emulator here")
    parser.add_argument("--crd", action="append", default=[], help="CRD YAML file to install (repeat)")
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with KubeAPI.running(port=args.port, kubeconfig=args.kubeconfig, crds=args.crd) as api:
            print(f"Kubernetes API emulator on {api.url}" + (f", kubeconfig {args.kubeconfig}" if args.kubeconfig
                                                            else ""), flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
