"""The real operator, run against the API emulator with the manifests' RBAC enforced, needs nothing more.

For the base (all namespaces) and the single-namespace overlay, the emulator (im2txt_standins.kube_api)
authorizes every resource request with Kubernetes RBAC semantics against the rendered Roles/ClusterRoles bound
to the operator's ServiceAccount (403 Forbidden otherwise), while the operator process, started with the
rendered Deployment's own arguments, takes a training through stage 1 (Job, step progress from the pod log)
into stage 2. A permission the operator uses but the manifests lack shows up here as a denied request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp.web
import crd_validate
import pytest
from manifests_support import BASE, CRD_PATH, ROOT, allowed, find, kustomize_build, load_docs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

_PATH = re.compile(
    r"/(?:api/v1|apis/(?P<g>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?"
)
JOBS = ("batch", "v1", "jobs")
PODS = ("", "v1", "pods")
TRAININGS = ("im2txt.dev", "v1alpha1", "im2txttrainings")


def request_attributes(method: str, path: str,
                       params: dict[str, str]) -> tuple[str, str, str, str | None, str | None] | None:
    """(group, resource[/subresource], verb, namespace, name) as the API server's RequestInfo derives them."""
    m = _PATH.fullmatch(path)
    if m is None:
        return None
    resource = m["plural"] + (f"/{m['sub']}" if m["sub"] else "")
    method = method.upper()
    if method == "GET":
        verb = "get" if m["name"] else ("watch" if params.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if m["name"] else "deletecollection"}[method]
    return m["g"] or "", resource, verb, m["ns"], m["name"]


def authorizer(docs: list[dict[str, Any]], namespace: str, name: str) -> Any:
    """RBAC for ServiceAccount namespace/name from rendered manifests: (group, resource, verb, ns) -> bool."""
    def role(kind: str, role_name: str, ns: str | None) -> list[dict[str, Any]]:
        found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == role_name
                 and (kind == "ClusterRole" or d["metadata"].get("namespace") == ns)]
        return found[0]["rules"] if found else []

    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    cluster_rules: list[dict[str, Any]] = []
    namespaced: dict[str, list[dict[str, Any]]] = {}
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding") or subject not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        if binding["kind"] == "ClusterRoleBinding":
            cluster_rules += role("ClusterRole", ref["name"], None)
        else:
            ns = binding["metadata"]["namespace"]
            namespaced.setdefault(ns, []).extend(role(ref["kind"], ref["name"], ns))

    def check(group: str, resource: str, verb: str, ns: str | None, name: str | None = None) -> bool:
        if allowed(cluster_rules, group, resource, verb, name):
            return True
        return ns is not None and allowed(namespaced.get(ns, []), group, resource, verb, name)

    return check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("folder", [BASE, ROOT / "manifests" / "overlays" / "single-namespace"],
                         ids=["base", "single-namespace"])
async def test_operator_runs_within_its_rbac(tmp_path: Path, folder: Path) -> None:
    from kmock import KubernetesError

    from im2txt_standins.kube_api import KubeAPI

    docs = kustomize_build(folder)
    deployment = find(docs, "Deployment", "im2txt-operator")
    pod = deployment["spec"]["template"]["spec"]
    permitted = authorizer(docs, deployment["metadata"]["namespace"], pod["serviceAccountName"])
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "im2txt_operator", "run"]
    seen: set[tuple[str, str, str]] = set()
    denied: set[str] = set()

    def authorize(request: Any) -> KubernetesError | None:
        method = str(getattr(request.method, "value", request.method))
        return authorize_raw(method, request.url.path, dict(request.params))

    kubeconfig = tmp_path / "kubeconfig"
    health = f"http://127.0.0.1:{_free_port()}/healthz"
    crd = crd_validate.load_crd(CRD_PATH)
    (training,) = load_docs(ROOT / "examples" / "training.yaml")
    training = crd_validate.apply_defaults(crd_validate.version_schema(crd, "v1alpha1"), training)

    class RbacKubeAPI(KubeAPI):
        """The emulator serves namespaces before its per-request hooks; authorize them too, as RBAC would."""

        async def __call__(self, raw_request: Any) -> Any:
            path = raw_request.path
            if path.startswith("/api/v1/namespaces") and path.count("/") <= 4 and (
                error := authorize_raw(raw_request.method, path, dict(raw_request.query))
            ):
                return self._status(error)
            if path == "/api/v1/namespaces" and raw_request.query.get("watch") in ("true", "1"):
                # The emulator does not stream namespace events; no namespace changes here, so an idle stream
                # (closed at timeoutSeconds, as the API server does) is a faithful answer.
                response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(raw_request)
                await asyncio.sleep(min(float(raw_request.query.get("timeoutSeconds", 60)), 60))
                return response
            return await super().__call__(raw_request)

    def authorize_raw(method: str, path: str, params: dict[str, str]) -> KubernetesError | None:
        attributes = request_attributes(method, path, params)
        if attributes is None:
            return None
        seen.add(attributes[:3])
        if not permitted(*attributes):
            denied.add(f"{method} {path} -> {attributes}")
            return KubernetesError(status=403, reason="Forbidden", message=f"RBAC: {attributes} is not allowed")
        return None

    async with RbacKubeAPI.running(kubeconfig=kubeconfig, crds=[CRD_PATH]) as api:
        api.faults.append(authorize)
        api.create_object(("", "v1", "secrets"), {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ufile-keys", "namespace": "ml"},
            "data": {"publicKey": "cHVi", "privateKey": "cHJpdg=="}}, "ml")
        api.create_object(TRAININGS, {**training, "metadata": {"name": "demo", "namespace": "ml"}}, "ml")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "IM2TXT_PROGRESS_INTERVAL": "0.5",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")])}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "im2txt_operator", "run", *container["args"], f"--liveness={health}",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        failure: AssertionError | None = None
        try:
            job1 = await _until(lambda: api.get_object(JOBS, "ml", "demo-stage1"), "the stage-1 Job")
            # Play the Job controller and kubelet: a running pod whose trainer has logged a step.
            api.create_object(PODS, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "demo-stage1-abcde", "namespace": "ml",
                             "labels": {"job-name": "demo-stage1", **job1["spec"]["template"]["metadata"]["labels"]}},
                "spec": {"containers": [{"name": "trainer", "image": "x"}]}}, "ml")
            api.patch_object(PODS, "ml", "demo-stage1-abcde", {"status": {"phase": "Running"}}, status=True)
            api.set_log("ml", "demo-stage1-abcde", "trainer", "global step 30: loss = 2.5 (0.10 sec/step)\n")
            api.patch_object(JOBS, "ml", "demo-stage1", {"status": {"active": 1, "startTime": "2026-01-01T00:00:00Z"}},
                             status=True)
            await _until(lambda: (api.get_object(TRAININGS, "ml", "demo").get("status") or {}).get("step") == 30,
                         "step 30 in the training's status")
            with urllib.request.urlopen(health, timeout=5) as response:
                assert response.status == 200
            api.patch_object(JOBS, "ml", "demo-stage1", {"status": {
                "active": 0, "succeeded": 1, "completionTime": "2026-01-01T00:01:00Z",
                "conditions": [{"type": "Complete", "status": "True"}]}}, status=True)
            # The Job is created first, then status says stage 2 (one patch after it): wait for both.
            await _until(lambda: api.get_object(JOBS, "ml", "demo-stage2") and (
                api.get_object(TRAININGS, "ml", "demo").get("status") or {}).get("stage") == 2,
                "stage 2's Job and status")
            final = api.get_object(TRAININGS, "ml", "demo")
        except AssertionError as e:
            failure = e
            status = (api.get_object(TRAININGS, "ml", "demo") or {}).get("status")
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), 20)
            except TimeoutError:
                proc.kill()
                output, _ = await proc.communicate()
        log = output.decode(errors="replace")
    if failure is not None:
        detail = f"denied: {sorted(denied)}; seen: {sorted(seen)}; status: {status}"
        raise AssertionError(f"{failure}; {detail}\n{log[-4000:]}")
    assert not denied, f"the operator needed permissions the manifests do not grant: {sorted(denied)}\n{log[-3000:]}"
    for needed in [
        ("im2txt.dev", "im2txttrainings", "watch"),
        ("im2txt.dev", "im2txttrainings/status", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "watch"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
    ]:
        assert needed in seen, (needed, sorted(seen))
    assert not {a for a in seen if a[0] == "" and a[1] == "secrets"}  # the operator reads no Secret


    # kopf reads namespaces only when restricted to some (its namespace observer); --all-namespaces never does.
    reads_namespaces = any(a[1] == "namespaces" for a in seen)
    assert reads_namespaces is ("--all-namespaces" not in container["args"]), sorted(seen)

    # GitOps: nothing the operator writes may show as drift. It wrote only the status subresource: spec is
    # byte for byte what was applied, and no finalizer or annotation of its own was added.
    assert ("im2txt.dev", "im2txttrainings", "patch") not in seen
    assert ("im2txt.dev", "im2txttrainings", "update") not in seen
    assert final["spec"] == training["spec"]
    assert not final["metadata"].get("finalizers")
    assert not final["metadata"].get("annotations")
    assert final["status"]["stage"] == 2


def test_request_attributes_follow_the_api_servers_rules() -> None:
    assert request_attributes("GET", "/api/v1/namespaces/ml/pods/p1/log", {}) == ("", "pods/log", "get", "ml", "p1")
    assert request_attributes("GET", "/apis/batch/v1/jobs", {"watch": "true"}) == (
        "batch", "jobs", "watch", None, None)
    assert request_attributes("GET", "/apis/batch/v1/namespaces/ml/jobs", {}) == ("batch", "jobs", "list", "ml", None)
    assert request_attributes("PATCH", "/apis/im2txt.dev/v1alpha1/namespaces/ml/im2txttrainings/t/status", {}) == (
        "im2txt.dev", "im2txttrainings/status", "patch", "ml", "t")
    assert request_attributes("DELETE", "/apis/batch/v1/namespaces/ml/jobs", {}) == (
        "batch", "jobs", "deletecollection", "ml", None)
    assert request_attributes("POST", "/api/v1/namespaces/ml/events", {}) == ("", "events", "create", "ml", None)


def test_the_lease_rule_is_limited_to_its_name() -> None:
    check = authorizer(kustomize_build(ROOT / "manifests" / "base"), "im2txt-system", "im2txt-operator")
    assert check("coordination.k8s.io", "leases", "get", "im2txt-system", "im2txt-operator")
    assert check("coordination.k8s.io", "leases", "update", "im2txt-system", "im2txt-operator")
    assert check("coordination.k8s.io", "leases", "create", "im2txt-system", None)
    assert not check("coordination.k8s.io", "leases", "update", "im2txt-system", "kube-scheduler")
    assert not check("coordination.k8s.io", "leases", "get", "kube-system", "im2txt-operator")
    assert not check("coordination.k8s.io", "leases", "list", "im2txt-system", None)


def test_authorizer_scopes_roles_to_their_namespace() -> None:
    docs = kustomize_build(ROOT / "manifests" / "overlays" / "single-namespace")
    check = authorizer(docs, "im2txt-system", "im2txt-operator")
    assert check("batch", "jobs", "create", "ml")
    assert not check("batch", "jobs", "create", "other")
    assert not check("batch", "jobs", "watch", None)  # a cluster-wide watch needs a ClusterRole
    assert check("apiextensions.k8s.io", "customresourcedefinitions", "watch", None)
    assert not authorizer(docs, "im2txt-system", "someone-else")("batch", "jobs", "create", "ml")
