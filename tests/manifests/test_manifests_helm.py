"""The Helm chart (charts/im2txt-operator) installs what manifests/base installs, and its values do what they say.

Rendered with the real helm (tests/helm_support.py builds it); compared with the real `kubectl kustomize`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_support import (
    CHART,
    HELM_LABELS,
    RELEASE,
    binary,
    by_kind_name,
    dumps,
    helm,
    template,
    values_file,
    without_helm_labels,
)
from manifests_support import BASE, CRD_PATH, K8S_VERSIONS, ROOT, k8s_validate

OVERLAY = ROOT / "manifests" / "overlays" / "single-namespace"
POLICY = ROOT / "manifests" / "policies" / "allowed-images"
PODMONITOR = ROOT / "manifests" / "monitoring" / "podmonitor.yaml"
FOREIGN = {("monitoring.coreos.com/v1", "PodMonitor")}  # no schema in kubernetes-validate
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaces": {"watchNamespaces": ["ml", "vision"]},
    "one-replica": {"replicas": 1, "leaderElection": {"enabled": False}},
    "everything": {"ufileDomains": [".ufile.example.com"], "metrics": {"service": {"enabled": True},
                                                                      "podMonitor": {"enabled": True}},
                   "policies": {"allowedImages": {"enabled": True, "prefixes": ["registry.example.com/ml/"]},
                                "operatorLimits": {"enabled": True}, "metricsNetwork": {"enabled": True},
                                "tensorboardNetwork": {"enabled": True, "namespaces": ["ml"]}},
                   "imagePullSecrets": [{"name": "pull"}], "nodeSelector": {"pool": "system"},
                   "tolerations": [{"key": "system", "operator": "Exists"}], "priorityClassName": "high",
                   "podAnnotations": {"team": "ml"}, "logFormat": "text"},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The real `kubectl kustomize` (kubectl comes with the virtualenv: make install)."""
    kubectl = Path(sys.prefix) / "bin" / "kubectl"
    if not kubectl.exists():
        kubectl = Path(shutil.which("kubectl") or "kubectl")
    out = subprocess.run([str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, f"kubectl kustomize {folder} failed: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def the(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def assert_same_objects(chart: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Object by object (kind, namespace, name): equal once the labels only Helm adds are left out."""
    ours, theirs = by_kind_name(without_helm_labels(chart)), by_kind_name(expected)
    assert sorted(ours) == sorted(theirs)
    for k, doc in theirs.items():
        assert ours[k] == doc, f"{k} differs:\nchart: {dumps(ours[k])}\nkustomize: {dumps(doc)}"


def test_helm_lint_passes_strict(home: Path) -> None:
    for name, values in VARIANTS.items():
        args = ["lint", "--strict", str(CHART), "--namespace", "im2txt-system"]
        out = helm(*args, *(["--values", str(values_file(home, values))] if values else []), home=home)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, (name, out.stdout)


def test_chart_crd_is_the_crd_file() -> None:
    """crds/ of the chart is a copy (Helm reads CRDs only from the chart's own crds/): `make helm-crds` refreshes it."""
    copy = CHART / "crds" / CRD_PATH.name
    assert copy.read_bytes() == CRD_PATH.read_bytes(), f"{copy.relative_to(ROOT)} is stale: make helm-crds"
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD_PATH.name]


def test_default_values_render_the_kustomize_base(home: Path) -> None:
    """Everything manifests/base installs, field for field; the Namespace is Helm's (the release namespace)."""
    base = kustomize(BASE)
    assert not any(HELM_LABELS & set(d["metadata"].get("labels", {})) for d in base)  # stripping hides nothing
    expected = [d for d in base if d["kind"] != "Namespace"]
    assert_same_objects(template(home, extra=["--include-crds"]), expected)


def test_chart_labels_are_the_helm_conventions(home: Path) -> None:
    for doc in template(home):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "im2txt-operator-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_everything_goes_to_the_release_namespace(home: Path) -> None:
    docs = template(home, namespace="ops")
    assert "im2txt-system" not in dumps(docs)
    namespaced = [d for d in docs if d["kind"] not in ("ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"ops"}
    for binding in (the(docs, "ClusterRoleBinding"), the(docs, "RoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": "ops"}]
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}  # the Lease's


def test_another_release_name_names_every_object_after_it(home: Path) -> None:
    """Cluster-scoped RBAC objects of two releases never collide; the pods of one are never selected by another."""
    docs = template(home, release="lab")
    assert {d["metadata"]["name"] for d in docs} == {"lab-im2txt-operator", "lab-im2txt-operator-leader-election"}
    selector = the(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "im2txt-operator", "app.kubernetes.io/instance": "lab"}
    assert the(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "lab-im2txt-operator"


def test_one_watched_namespace_renders_the_single_namespace_overlay(home: Path) -> None:
    """watchNamespaces: [ml] is manifests/overlays/single-namespace: --namespace=ml, a Role and RoleBinding in ml,
    a ClusterRole with only the cluster-scoped reads kopf needs (the CRD, namespaces)."""
    expected = [d for d in kustomize(OVERLAY) if d["kind"] != "Namespace"]
    assert_same_objects(template(home, {"watchNamespaces": ["ml"]}, extra=["--include-crds"]), expected)


def test_watched_namespaces_get_a_role_each_and_no_cluster_wide_training_rights(home: Path) -> None:
    docs = template(home, VARIANTS["namespaces"])
    assert container(docs)["args"] == ["--namespace=ml", "--namespace=vision", "--leader-elect", "--log-format=json"]
    cluster_rules = the(docs, "ClusterRole")["rules"]
    assert {r for rule in cluster_rules for r in rule["resources"]} == {"customresourcedefinitions", "namespaces"}
    assert all(set(rule["verbs"]) == {"list", "watch"} for rule in cluster_rules)
    overlay_role = the(kustomize(OVERLAY), "Role", RELEASE)
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == RELEASE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "vision"]
    assert all(r["rules"] == overlay_role["rules"] for r in roles)
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == RELEASE]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml", "vision"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": "im2txt-system"}]


def test_ufile_domains_become_the_flag_make_deploy_sets(home: Path, tmp_path: Path) -> None:
    assert not any(a.startswith("--ufile-domains") for a in container(template(home))["args"])
    domains = [".ufile.example.com", ".lab.example"]
    args = container(template(home, {"ufileDomains": domains}))["args"]
    assert args == ["--all-namespaces", "--leader-elect", "--log-format=json",
                    "--ufile-domains=.ufile.example.com,.lab.example"]
    # The same flag as `make deploy UFILE_DOMAINS=...` (tools/deploy_overlay.sh) gives the operator.
    subprocess.run([str(ROOT / "tools" / "deploy_overlay.sh"), str(tmp_path / "overlay"), "im2txt-operator:0.1.0"],
                   check=True, timeout=30, env={**os.environ, "UFILE_DOMAINS": ",".join(domains)})
    assert container(kustomize(tmp_path / "overlay"))["args"] == args


def test_plain_http_to_ufile_is_the_same_opt_in_as_make_deploy(home: Path, tmp_path: Path) -> None:
    """HTTPS by default; ufileInsecureHttp gives the flag `make deploy UFILE_INSECURE_HTTP=1` gives."""
    assert "--ufile-insecure-http" not in container(template(home))["args"]
    args = container(template(home, {"ufileInsecureHttp": True}))["args"]
    assert args == ["--all-namespaces", "--leader-elect", "--log-format=json", "--ufile-insecure-http"]
    subprocess.run([str(ROOT / "tools" / "deploy_overlay.sh"), str(tmp_path / "overlay"), "im2txt-operator:0.1.0"],
                   check=True, timeout=30, env={**os.environ, "UFILE_INSECURE_HTTP": "1"})
    assert container(kustomize(tmp_path / "overlay"))["args"] == args


def test_values_schema_refuses_what_the_operator_would_refuse(home: Path) -> None:
    for values, field in (({"ufileDomains": ["ufileos.com"]}, "ufileDomains"),  # no leading dot
                          ({"watchNamespaces": ["ML"]}, "watchNamespaces"),
                          ({"logFormat": "xml"}, "logFormat"),
                          ({"replica": 3}, "replica")):
        out = helm("template", RELEASE, str(CHART), "--values", str(values_file(home, values)), home=home,
                   check=False)
        assert out.returncode != 0 and field in out.stderr, (values, out.stderr)


def test_image_values_set_the_operator_image(home: Path) -> None:
    c = container(template(home, {"image": {"repository": "registry.example.com/im2txt/im2txt-operator",
                                            "tag": "0.2.0", "pullPolicy": "Always"}}))
    assert (c["image"], c["imagePullPolicy"]) == ("registry.example.com/im2txt/im2txt-operator:0.2.0", "Always")


def test_one_replica_without_leader_election(home: Path) -> None:
    docs = template(home, VARIANTS["one-replica"])
    assert the(docs, "Deployment")["spec"]["replicas"] == 1
    assert container(docs)["args"] == ["--all-namespaces", "--log-format=json"]
    kinds = {d["kind"] for d in docs}
    assert "Role" not in kinds and "RoleBinding" not in kinds  # no Lease to hold
    assert "PodDisruptionBudget" not in kinds  # minAvailable: 1 of one pod would block every drain
    refused = helm("template", RELEASE, str(CHART), "--set", "leaderElection.enabled=false", home=home, check=False)
    assert refused.returncode != 0 and "replicas > 1 needs leaderElection.enabled=true" in refused.stderr


def test_metrics_service_and_podmonitor_are_off_by_default_and_on_when_asked(home: Path) -> None:
    assert {d["kind"] for d in template(home)} & {"Service", "PodMonitor"} == set()
    docs = template(home, {"metrics": {"service": {"enabled": True}, "podMonitor": {"enabled": True}}})
    pod_labels = the(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = the(docs, "Service", f"{RELEASE}-metrics")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container(docs)["ports"]
    # The PodMonitor is manifests/monitoring/podmonitor.yaml, selecting this release's pods.
    monitor = the(docs, "PodMonitor")
    (shipped,) = yaml.safe_load_all(PODMONITOR.read_text())
    assert without_helm_labels(monitor) == shipped
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    labelled = template(home, {"metrics": {"podMonitor": {"enabled": True, "labels": {"release": "kps"}}}})
    assert the(labelled, "PodMonitor")["metadata"]["labels"]["release"] == "kps"


def test_allowed_images_policy_is_the_shipped_policy(home: Path) -> None:
    assert not {"ValidatingAdmissionPolicy", "ConfigMap"} & {d["kind"] for d in template(home)}
    prefixes = ["registry.example.com/ml/", "ghcr.io/your-org/"]  # those of the shipped params.yaml
    docs = template(home, {"policies": {"allowedImages": {"enabled": True, "prefixes": prefixes}}})
    policy = {k: d for k, d in by_kind_name(docs).items() if k[0] not in {"Deployment", "ServiceAccount",
                                                                          "ClusterRole", "ClusterRoleBinding", "Role",
                                                                          "RoleBinding", "PodDisruptionBudget"}}
    shipped = by_kind_name(kustomize(POLICY))
    assert sorted(policy) == sorted(shipped)
    for k, doc in shipped.items():
        ours = {**policy[k], "metadata": {**policy[k]["metadata"], "labels": doc["metadata"]["labels"]}}
        assert ours == doc, k
        assert doc["metadata"]["labels"].items() <= policy[k]["metadata"]["labels"].items()
    for values, extra, message in (
        ({"enabled": True, "prefixes": []}, [], "policies.allowedImages.prefixes is empty"),
        ({"enabled": True, "prefixes": prefixes}, ["--kube-version", "1.29.4"], "needs Kubernetes 1.30 or newer"),
    ):
        out = helm("template", RELEASE, str(CHART), *extra, "--values",
                   str(values_file(home, {"policies": {"allowedImages": values}})), home=home, check=False)
        assert out.returncode != 0 and message in out.stderr, out.stderr


def test_kube_version_below_1_29_is_refused(home: Path) -> None:
    refused = helm("template", RELEASE, str(CHART), "--kube-version", "1.28.9", home=home, check=False)
    assert refused.returncode != 0 and "kubeVersion" in refused.stderr, refused.stderr
    for version in ("1.29.0", "v1.30.2-gke.1000", "1.36.3"):
        helm("template", RELEASE, str(CHART), "--kube-version", version, home=home)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid(home: Path, variant: str) -> None:
    for doc in template(home, VARIANTS[variant]):
        if (doc["apiVersion"], doc["kind"]) not in FOREIGN:
            for version in K8S_VERSIONS:
                k8s_validate(doc, version)


def test_make_helm_template_renders_the_image_and_the_crd() -> None:
    out = subprocess.run(["make", "--no-print-directory", "helm-template", "IMAGE_REGISTRY=reg.example.com/team",
                          "TAG=v9", f"HELM={binary()}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all((ROOT / "build" / "helm" / "im2txt-operator.yaml").read_text()) if d]
    assert container(docs)["image"] == "reg.example.com/team/im2txt-operator:v9"
    assert the(docs, "CustomResourceDefinition") == yaml.safe_load(CRD_PATH.read_text())
