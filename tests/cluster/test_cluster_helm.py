"""The Helm chart on the real API server: helm install, upgrade and uninstall of charts/im2txt-operator.

A control plane of its own (not the session's, where manifests/base is applied): here Helm installs the CRD from
the chart's crds/, and uninstall must leave it, with every training. There is no kubelet, so the operator's pods
never run; instead the real operator process runs with the installed Deployment's args as the installed
ServiceAccount, so the chart's RBAC and flags are what let it (or not) create a training's Job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_support import CRD_NAME, Api, ApiError, OperatorProcess, wait_for
from control_plane import ControlPlane, find_assets
from helm_support import CHART, RELEASE, helm, values_file
from test_cluster_operator_limits import JOB, refusal

pytestmark = pytest.mark.timeout(400)

NS = "im2txt-system"


def spec(name: str, **changes: Any) -> dict[str, Any]:
    """A small training with an output folder of its own (two trainings may not share one)."""
    return {"dataPath": "pvc://coco-data/mscoco/", "outputPath": f"pvc://runs/{name}/", "numberOfSteps": 100,
            "stage2NumberOfSteps": 300, "gpus": 0, **changes}

CLUSTER_SCOPED = {"ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                  "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
                  "ValidatingAdmissionPolicyBinding":
                      "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
                  "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"}
NAMESPACED = {"ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
              "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
              "Service": "/api/v1/namespaces/{ns}/services",
              "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
              "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
              "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
              "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"}


@pytest.fixture(scope="module")
def helm_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(find_assets(), tmp_path_factory.mktemp("envtest-helm"))
    try:
        yield plane.start()
    finally:
        plane.stop()


def path(doc: dict[str, Any]) -> str:
    kind, meta = doc["kind"], doc["metadata"]
    folder = CLUSTER_SCOPED[kind] if kind in CLUSTER_SCOPED else NAMESPACED[kind].format(ns=meta["namespace"])
    return f"{folder}/{meta['name']}"


def stored_as_rendered(live: Any, rendered: Any, where: str = "") -> None:
    """Every field the chart rendered is stored as rendered (the API server only adds defaults)."""
    if isinstance(rendered, dict):
        assert isinstance(live, dict), where
        for k, v in rendered.items():
            assert k in live, f"{where}.{k} missing"
            stored_as_rendered(live[k], v, f"{where}.{k}")
    elif isinstance(rendered, list):
        assert isinstance(live, list) and len(live) == len(rendered), f"{where}: {live!r} != {rendered!r}"
        for i, (a, b) in enumerate(zip(live, rendered, strict=True)):
            stored_as_rendered(a, b, f"{where}[{i}]")
    else:
        assert live == rendered, f"{where}: {live!r} != {rendered!r}"


class Release:
    """One Helm release of the chart on ``plane``, and what it should have installed."""

    def __init__(self, plane: ControlPlane, home: Path, name: str = RELEASE, ns: str = NS) -> None:
        self.plane, self.home, self.api, self.name, self.ns = plane, home, Api(plane), name, ns

    def helm(self, *args: str) -> str:
        return helm(*args, home=self.home, kubeconfig=self.plane.kubeconfig_path, timeout=300).stdout

    def run(self, command: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        """``helm install`` or ``helm upgrade`` with exactly ``values``; returns the objects it rendered."""
        vals = values_file(self.home, values)
        extra = ["--create-namespace"] if command == "install" else []
        self.helm(command, self.name, str(CHART), "--namespace", self.ns, "--values", str(vals), *extra)
        manifest = self.helm("get", "manifest", self.name, "--namespace", self.ns)
        return [d for d in yaml.safe_load_all(manifest) if d]

    def check_stored(self, rendered: list[dict[str, Any]]) -> None:
        for doc in rendered:
            live = self.api.get(path(doc))
            assert live is not None, f"{doc['kind']} {doc['metadata']['name']} was not installed"
            stored_as_rendered(live, doc, f"{doc['kind']}/{doc['metadata']['name']}")
            assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == self.name

    def deployment(self) -> dict[str, Any]:
        live = self.api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{RELEASE}")
        assert live is not None
        return live

    def can(self, verb: str, resource: str, ns: str) -> bool:
        sa = f"system:serviceaccount:{NS}:{RELEASE}"
        out = self.plane.kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={sa}", check=False)
        return out.stdout.strip() == "yes"

    @contextlib.contextmanager
    def operator(self, tmp_path: Path, name: str) -> Iterator[OperatorProcess]:
        """The real operator with the installed Deployment's args, as its ServiceAccount (a token of it)."""
        token = self.plane.kubectl("create", "token", RELEASE, "-n", NS, "--duration=1h").stdout.strip()
        kubeconfig = self.plane.write_kubeconfig(tmp_path / f"{name}.kubeconfig", token, RELEASE)
        (container,) = self.deployment()["spec"]["template"]["spec"]["containers"]
        op = OperatorProcess(kubeconfig, tmp_path / f"{name}.log", args=tuple(container["args"]),
                             started=("became the leader",)).start()
        try:
            yield op
            assert "Forbidden" not in op.log and " 403" not in op.log, op.log[-4000:]
        finally:
            op.stop()

    def starts(self, op: OperatorProcess, ns: str, name: str, spec: dict[str, Any]) -> None:
        """A new training in ``ns`` gets its stage-1 Job: the chart's RBAC and flags let the operator work."""
        for claim in ("coco-data", "runs"):
            if self.api.get(self.api.core(ns, "persistentvolumeclaims", claim)) is None:
                self.api.claim(ns, claim)
        self.api.new_training(ns, name, spec)
        wait_for(lambda: self.api.job(ns, f"{name}-stage1"), timeout=60, what=f"Job {name}-stage1",
                 on_timeout=lambda: op.log[-4000:])


def test_helm_install_upgrade_uninstall(helm_plane: ControlPlane, tmp_path: Path) -> None:
    home = tmp_path / "helm"
    home.mkdir()
    release = Release(helm_plane, home)
    api = release.api

    # install: the CRD from crds/ (Established), and every object of the chart stored as rendered.
    rendered = release.run("install", {})
    assert {d["kind"] for d in rendered} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                            "RoleBinding", "Deployment", "PodDisruptionBudget"}
    release.check_stored(rendered)
    crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    assert crd is not None
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    deployment = release.deployment()
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--all-namespaces", "--leader-elect", "--log-format=json"]
    assert container["image"] == "im2txt-operator:0.1.0"
    # The Deployment controller made its two pods (Pending for ever: no scheduler or kubelet in this tier).
    wait_for(lambda: len(api.request("GET", f"/api/v1/namespaces/{NS}/pods")["items"]) == 2, timeout=60,
             what="the Deployment's two pods")
    assert "STATUS: deployed" in release.helm("status", RELEASE, "--namespace", NS)
    api.namespace("ml")
    api.namespace("other")
    assert release.can("list", "im2txttrainings.im2txt.dev", "other")
    with release.operator(tmp_path, "all") as op:
        release.starts(op, "ml", "coco", spec("coco"))

    # upgrade: more replicas, allowed UFile hosts, the metrics Service; then only the namespace ml.
    values = {"replicas": 3, "ufileDomains": [".ufile.example.com"], "metrics": {"service": {"enabled": True}}}
    rendered = release.run("upgrade", values)
    release.check_stored(rendered)
    deployment = release.deployment()
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--ufile-domains=.ufile.example.com"
    service = api.get(f"/api/v1/namespaces/{NS}/services/{RELEASE}-metrics")
    assert service is not None and service["spec"]["ports"][0]["port"] == 9090
    rendered = release.run("upgrade", {**values, "watchNamespaces": ["ml"]})
    release.check_stored(rendered)
    assert release.deployment()["spec"]["template"]["spec"]["containers"][0]["args"][0] == "--namespace=ml"
    assert api.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/ml/roles/{RELEASE}") is not None
    assert release.can("list", "im2txttrainings.im2txt.dev", "ml")
    assert not release.can("list", "im2txttrainings.im2txt.dev", "other")  # the ClusterRole lost it
    assert release.can("list", "namespaces", "")  # kopf's namespace observer, with --namespace
    assert "REVISION: 3" in release.helm("status", RELEASE, "--namespace", NS)
    with release.operator(tmp_path, "ml") as op:
        # Hosts in ufileDomains are allowed; UCloud's own (the CRD's default suffix) no longer are, for a training
        # that reads or writes a ufile:// path (a pvc-only one sends nothing anywhere).
        from_ufile = {"dataPath": "ufile://im2txt-data/coco/", "credentialsSecret": "ufile-keys"}
        allowed = {"uploadSuffix": ".cn-bj.ufile.example.com", "downloadSuffix": ".cn-bj.ufile.example.com"}
        release.starts(op, "ml", "coco2", spec("coco2", ufile=allowed, **from_ufile))
        api.new_training("ml", "ucloud", spec("ucloud", **from_ufile))
        ready = wait_for(lambda: api.condition("ml", "ucloud", "Ready").get("status") == "False"
                         and api.condition("ml", "ucloud", "Ready"), timeout=60, what="ucloud Ready=False",
                         on_timeout=lambda: op.log[-4000:])
        assert "spec.ufile.uploadSuffix" in ready["message"], ready
        assert "(.ufile.example.com)" in ready["message"], ready
        assert api.job("ml", "ucloud-stage1") is None

    # uninstall: everything of the release goes; the CRD, every training and their Jobs stay.
    api.new_training("other", "kept", spec("kept"))
    release.helm("uninstall", RELEASE, "--namespace", NS)
    for doc in rendered:
        wait_for(lambda doc=doc: api.get(path(doc)) is None, timeout=60,
                 what=f"{doc['kind']} {doc['metadata']['name']} deleted")
    assert api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}") is not None
    trainings = {(t["metadata"]["namespace"], t["metadata"]["name"])
                 for t in api.request("GET", "/apis/im2txt.dev/v1alpha1/im2txttrainings")["items"]}
    assert trainings == {("ml", "coco"), ("ml", "coco2"), ("ml", "ucloud"), ("other", "kept")}
    assert api.training("ml", "coco")["spec"]["outputPath"] == "pvc://runs/coco/"
    assert api.job("ml", "coco-stage1") is not None and api.job("ml", "coco2-stage1") is not None
    assert RELEASE not in release.helm("list", "--all-namespaces")


def test_helm_allowed_images_policy_refuses_other_registries(helm_plane: ControlPlane, tmp_path: Path) -> None:
    """policies.allowedImages: the API server itself refuses a training with an image from another registry, while
    the release is installed; its uninstall takes the policy with it."""
    home = tmp_path / "helm"
    home.mkdir()
    release = Release(helm_plane, home, name="guarded", ns="guarded-system")
    api = release.api
    api.needs_admission_policies()  # the chart refuses the policy below 1.30 (a test in tests/manifests)
    rendered = release.run("install", {"replicas": 1, "leaderElection": {"enabled": False},
                                       "policies": {"allowedImages": {"enabled": True,
                                                                      "prefixes": ["registry.example.com/ml/"]}}})
    release.check_stored(rendered)
    assert {d["metadata"]["name"] for d in rendered if d["kind"] == "ClusterRole"} == {"guarded-im2txt-operator"}
    wait_for(lambda: api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"), timeout=60,
             what="the CRD")
    ns = api.namespace("tenant")

    def create(name: str, image: str) -> int:
        """The HTTP status of creating a training with ``image`` (201, or the API server's refusal)."""
        try:
            api.new_training(ns, name, spec(name, image=image))
        except ApiError as e:
            return e.status
        return 201

    # A policy takes effect a moment after it is created.
    wait_for(lambda: create("probe", "evil.example.org/miner:1") == 422, timeout=60, what="the policy enforced")
    with pytest.raises(ApiError) as refused:
        api.new_training(ns, "evil", spec("evil", image="evil.example.org/miner:1"))
    assert "spec.image: evil.example.org/miner:1 is not from an allowed registry" in refused.value.body["message"]
    assert create("good", "registry.example.com/ml/im2txt-trainer:0.1.0") == 201

    release.helm("uninstall", release.name, "--namespace", release.ns)
    for doc in rendered:
        wait_for(lambda doc=doc: api.get(path(doc)) is None, timeout=60,
                 what=f"{doc['kind']} {doc['metadata']['name']} deleted")
    wait_for(lambda: create("later", "evil.example.org/miner:1") == 201, timeout=60, what="the policy gone")
    assert api.training(ns, "good")["spec"]["image"] == "registry.example.com/ml/im2txt-trainer:0.1.0"


def test_helm_operator_limits_bind_this_releases_service_account(helm_plane: ControlPlane, tmp_path: Path) -> None:
    """policies.operatorLimits: the API server refuses the release's own ServiceAccount a Job no training controls
    or one with a hostPath volume, admits a training's Job, and leaves everyone else alone; uninstall removes it."""
    home = tmp_path / "helm"
    home.mkdir()
    release = Release(helm_plane, home, name="limited", ns="limited-system")
    api = release.api
    api.needs_admission_policies()
    rendered = release.run("install", {"replicas": 1, "leaderElection": {"enabled": False},
                                       "policies": {"operatorLimits": {"enabled": True}}})
    release.check_stored(rendered)
    assert {d["metadata"]["name"] for d in rendered if d["kind"] == "ValidatingAdmissionPolicy"} == {
        "limited-im2txt-operator-pods", "limited-im2txt-operator-owned"}
    token = helm_plane.kubectl("create", "token", "limited-im2txt-operator", "-n", release.ns,
                               "--duration=1h").stdout.strip()
    as_operator, ns = Api(helm_plane, token), api.namespace("limits")
    hostpath = {**JOB, "spec": {"template": {"spec": {**JOB["spec"]["template"]["spec"],
                                                      "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}}}
    message = wait_for(lambda: refusal(as_operator, api.jobs(ns), hostpath), timeout=60, what="the policy enforced")
    assert "limited-im2txt-operator-pods" in message and "may not create pods with a hostPath volume" in message
    unowned = {**JOB, "metadata": {"name": "probe"}}
    assert "may only create Jobs and Deployments that an Im2txtTraining controls" in (
        refusal(as_operator, api.jobs(ns), unowned) or "")
    assert refusal(as_operator, api.jobs(ns), JOB) is None  # what a training's Job looks like passes
    assert refusal(api, api.jobs(ns), hostpath) is None  # the admin is not the operator
    release.helm("uninstall", release.name, "--namespace", release.ns)
    for doc in rendered:
        wait_for(lambda doc=doc: api.get(path(doc)) is None, timeout=60,
                 what=f"{doc['kind']} {doc['metadata']['name']} deleted")
