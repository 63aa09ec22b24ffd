"""The operator's RBAC grants exactly what docs/contracts.md lists, and nothing else."""

from __future__ import annotations

import re
from typing import Any

import pytest
from manifests_support import ROOT, allowed, find, grants, kustomize_build

# docs/contracts.md, "What the operator may do on the API": (API group, resource) -> verbs.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("im2txt.dev", "im2txttrainings"): {"get", "list", "watch"},
    ("im2txt.dev", "im2txttrainings/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("kueue.x-k8s.io", "workloads"): {"list"},
    ("", "persistentvolumeclaims"): {"get"},
    ("apps", "deployments"): {"get", "create", "patch", "delete"},
    ("", "services"): {"get", "create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "create", "patch"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"list", "create"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}
CLUSTER_SCOPED = {("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")}
# kopf watches namespaces only when restricted with --namespace: the single-namespace overlay grants it, the
# base (--all-namespaces) does not.
OVERLAY_ONLY = {("", "namespaces")}
BASE = {k: v for k, v in EXPECTED.items() if k not in OVERLAY_ONLY}


@pytest.fixture(scope="module")
def rules(base_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return find(base_docs, "ClusterRole", "im2txt-operator")["rules"]


def test_rules_grant_exactly_the_contract(rules: list[dict[str, Any]]) -> None:
    assert grants(rules) == BASE


def test_expected_table_matches_contracts_md() -> None:
    """EXPECTED above is contracts.md's list: same resources, same verbs (the groups are checked above)."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    section = text.split("## What the operator may do on the API", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for resource, verbs in re.findall(r"`([a-z0-9./]+)`: ([a-z, ]+)", section):
        listed.setdefault(resource, set()).update(v.strip() for v in verbs.split(",") if v.strip())
    ours: dict[str, set[str]] = {}
    for (_, resource), verbs in EXPECTED.items():
        ours.setdefault(resource, set()).update(verbs)
    assert listed == ours


def test_no_wildcards_and_no_resource_names(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no nonResourceURLs either


def test_no_rule_on_secrets(rules: list[dict[str, Any]]) -> None:
    """Whoever holds the operator's token reads no Secret: not Helm's, not Argo CD's, not a CA key."""
    assert not any("secrets" in rule["resources"] for rule in rules)
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"):
        assert not allowed(rules, "", "secrets", verb), verb


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    [
        ("im2txt.dev", "im2txttrainings", "create"),
        ("im2txt.dev", "im2txttrainings", "update"),  # the operator never writes spec
        ("im2txt.dev", "im2txttrainings", "delete"),
        ("batch", "jobs", "update"),
        ("batch", "jobs/status", "patch"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "get"),
        ("", "pods/exec", "create"),
        ("", "configmaps", "get"),
        ("", "serviceaccounts", "create"),
        ("", "persistentvolumeclaims", "list"),
        ("", "nodes", "list"),
        ("", "namespaces", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("coordination.k8s.io", "leases", "create"),
        ("kopf.dev", "clusterkopfpeerings", "list"),
    ],
)
def test_denied(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> None:
    assert not allowed(rules, group, resource, verb)


def test_nothing_cluster_scoped_but_crds_and_namespaces_and_only_read(rules: list[dict[str, Any]]) -> None:
    namespaced = {k for k in BASE if k not in CLUSTER_SCOPED}
    for k, verbs in grants(rules).items():
        assert k in namespaced or k in CLUSTER_SCOPED, k
        if k in CLUSTER_SCOPED:
            assert verbs <= {"get", "list", "watch"}, k


def test_binding_gives_the_role_to_the_deployments_service_account(base_docs: list[dict[str, Any]]) -> None:
    binding = find(base_docs, "ClusterRoleBinding", "im2txt-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "im2txt-operator",
    }
    sa = find(base_docs, "ServiceAccount", "im2txt-operator")
    deployment = find(base_docs, "Deployment", "im2txt-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert deployment["metadata"]["namespace"] == sa["metadata"]["namespace"]
    # Nothing else grants rights, but the Lease of leader election (test_leader_election_grows_rbac_by_the_lease).
    assert [d["metadata"]["name"] for d in base_docs if d["kind"] in ("Role", "RoleBinding")] == [
        "im2txt-operator-leader-election"] * 2
    assert len([d for d in base_docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]) == 2


def test_leader_election_grows_rbac_by_the_lease_alone(base_docs: list[dict[str, Any]]) -> None:
    role = find(base_docs, "Role", "im2txt-operator-leader-election")
    sa = find(base_docs, "ServiceAccount", "im2txt-operator")
    assert role["metadata"]["namespace"] == sa["metadata"]["namespace"]  # the operator's namespace, not cluster-wide
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["im2txt-operator"],
         "verbs": ["get", "update"]},
    ]
    binding = find(base_docs, "RoleBinding", "im2txt-operator-leader-election")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] and binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "im2txt-operator",
                                    "namespace": sa["metadata"]["namespace"]}]


def test_single_namespace_overlay_grants_the_contract_in_one_namespace() -> None:
    docs = kustomize_build(ROOT / "manifests" / "overlays" / "single-namespace")
    deployment = find(docs, "Deployment", "im2txt-operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert len(args) == 3 and args[0].startswith("--namespace=") and args[1:] == ["--leader-elect", "--log-format=json"]
    namespace = args[0].split("=", 1)[1]
    role, binding = find(docs, "Role", "im2txt-operator"), find(docs, "RoleBinding", "im2txt-operator")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "im2txt-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "im2txt-operator", "namespace": "im2txt-system"}]
    cluster = grants(find(docs, "ClusterRole", "im2txt-operator")["rules"])
    assert cluster == {k: EXPECTED[k] for k in CLUSTER_SCOPED}  # read-only: CRDs and namespaces
    namespaced = {k: v for k, v in EXPECTED.items() if k not in CLUSTER_SCOPED}
    assert grants(role["rules"]) == namespaced
