"""The real-API tier: one control plane for the session (tools/control_plane.py), the project installed on it
with `kubectl apply --server-side -k manifests/base`, a namespace per test, the operator as its ServiceAccount."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import (
    CRD_NAME,
    OPERATOR_NS,
    OPERATOR_SA,
    Api,
    OperatorProcess,
    Replicas,
    apply_base,
    operator_kubeconfig_of,
    wait_for,
)
from control_plane import ControlPlane, find_assets

_names = itertools.count(1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(find_assets(), tmp_path_factory.mktemp("envtest"))
    try:
        yield plane.start()
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def installed(plane: ControlPlane) -> ControlPlane:
    """The project as a user installs it; returns when the CRD serves and its OpenAPI (kubectl explain) is up."""
    apply_base(plane)
    plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    # The CRD's OpenAPI is published a few seconds after Established.
    wait_for(lambda: plane.kubectl("explain", "im2txttraining.spec.dataPath", check=False).returncode == 0,
             timeout=60, what="the CRD's OpenAPI")
    return plane


@pytest.fixture(scope="session")
def admin(installed: ControlPlane) -> Api:
    return Api(installed)


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: ControlPlane) -> Path:
    """A kubeconfig with a token of the operator's own ServiceAccount: exactly manifests/base/rbac.yaml."""
    return operator_kubeconfig_of(installed)


@pytest.fixture
def ns(admin: Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted after it (the namespace controller removes what is left)."""
    name = admin.namespace(f"t{next(_names)}-{request.node.name[5:25].strip('_').replace('_', '-').lower()}"
                           .rstrip("-"))
    yield name
    admin.delete(f"/api/v1/namespaces/{name}")


def dump_on_failure(request: pytest.FixtureRequest, api: Api, ns: str, op: OperatorProcess | None) -> None:
    failed = any(getattr(request.node, f"report_{w}", None) is not None and
                 getattr(request.node, f"report_{w}").failed for w in ("setup", "call"))
    if not failed:
        return
    if op is not None:
        print(f"--- operator log ---\n{op.log[-8000:]}")
    for path in (api.trainings(ns), api.jobs(ns)):
        items = api.request("GET", path)["items"]
        print(f"--- {path} ---\n" + json.dumps([{k: i.get(k) for k in ("metadata", "status")} for i in items],
                                                 indent=1)[-6000:])


@pytest.fixture
def operator(operator_kubeconfig: Path, admin: Api, ns: str, request: pytest.FixtureRequest,
             tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as manifests/base deploys it: all namespaces, the ClusterRole of rbac.yaml. (``--namespace``
    needs the single-namespace overlay's extra right to list namespaces, which kopf asks for.)"""
    op = OperatorProcess(operator_kubeconfig, tmp_path / "operator.log").start()
    try:
        yield op
    finally:
        op.stop()
        dump_on_failure(request, admin, ns, op)


@pytest.fixture
def replicas(operator_kubeconfig: Path, admin: Api, tmp_path: Path) -> Iterator[Replicas]:
    """Leader-elected operators (tests/cluster/test_cluster_failover.py, test_cluster_leader.py); stopped with
    SIGTERM afterwards, so the leader releases the Lease for the next test."""
    r = Replicas(operator_kubeconfig, tmp_path)
    try:
        yield r
    finally:
        for op in r.all:
            op.stop()
        for op in r.all:
            print(f"--- {op.logfile.name} ---\n{op.log[-4000:]}")


RBAC = "/apis/rbac.authorization.k8s.io/v1"
OBSERVER = "im2txt-test-namespace-observer"


@pytest.fixture
def scoped(installed: ControlPlane, operator_kubeconfig: Path, admin: Api, ns: str, request: pytest.FixtureRequest,
           tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Starts operators that serve ``ns`` alone (``--namespace``, and any more flags given), one after another, so
    that their metrics count this test's trainings only. kopf's namespace observer gets the right to list and watch
    namespaces that the single-namespace overlay grants; the rest is the base ClusterRole's."""
    admin.create(f"{RBAC}/clusterroles", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                          "metadata": {"name": OBSERVER}, "rules": [
                                              {"apiGroups": [""], "resources": ["namespaces"],
                                               "verbs": ["list", "watch"]}]})
    admin.create(f"{RBAC}/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": OBSERVER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OBSERVER},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NS}]})
    who = f"--as=system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
    wait_for(lambda: installed.kubectl("auth", "can-i", "watch", "namespaces", who, check=False).returncode == 0,
             what="the namespace observer's right")
    started: list[OperatorProcess] = []

    def start(*flags: str) -> OperatorProcess:
        if started:
            started[-1].stop(kill=True)
        started.append(OperatorProcess(operator_kubeconfig, tmp_path / "operator.log",
                                       args=("--namespace", ns, *flags)).start())
        return started[-1]

    try:
        yield start
    finally:
        for op in started:
            op.stop()
        dump_on_failure(request, admin, ns, started[-1] if started else None)
        admin.request("DELETE", f"{RBAC}/clusterrolebindings/{OBSERVER}")
        admin.request("DELETE", f"{RBAC}/clusterroles/{OBSERVER}")
