"""The chart's optional policies are the shipped ones (manifests/policies), off by default, for this release.

operator-limits names the operator's ServiceAccount in CEL: the chart writes the release's, where the kustomize
folder must be edited by hand. The network policies are manifests/policies/network's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_support import CHART, HELM_LABELS, RELEASE, by_kind_name, helm, template, values_file
from manifests_support import ROOT
from test_manifests_helm import kustomize

POLICIES = ROOT / "manifests" / "policies"
OPERATOR_KINDS = {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                  "PodDisruptionBudget"}
USERNAME = "request.userInfo.username == 'system:serviceaccount:{ns}:{sa}'"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-policies")


def policies(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {k: dict(d) for k, d in by_kind_name(docs).items() if k[0] not in OPERATOR_KINDS}


def shipped_labels(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """``ours`` with the shipped object's labels, once they are checked to be among ours (Helm adds its own)."""
    assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()
    assert set(ours["metadata"]["labels"]) - set(theirs["metadata"]["labels"]) <= HELM_LABELS | {
        "app.kubernetes.io/name"}
    return {**ours, "metadata": {**ours["metadata"], "labels": theirs["metadata"]["labels"]}}


def test_every_optional_policy_is_off_by_default(home: Path) -> None:
    kinds = {d["kind"] for d in template(home)}
    assert not kinds & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "NetworkPolicy"}


def test_operator_limits_is_the_shipped_policy(home: Path) -> None:
    ours = policies(template(home, {"policies": {"operatorLimits": {"enabled": True}}}, extra=["--include-crds"]))
    ours = {k: d for k, d in ours.items() if k[0] != "CustomResourceDefinition"}
    theirs = by_kind_name(kustomize(POLICIES / "operator-limits"))
    assert sorted(ours) == sorted(theirs)
    for k, doc in theirs.items():
        assert shipped_labels(ours[k], dict(doc)) == doc, k


def test_operator_limits_name_this_releases_service_account(home: Path) -> None:
    """Another release (name and namespace): its own ServiceAccount in every matchCondition, its own policy names,
    so two releases never share or overwrite a policy."""
    docs = template(home, {"policies": {"operatorLimits": {"enabled": True}}}, namespace="ops", release="lab")
    ours = policies(docs)
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    assert sa == "lab-im2txt-operator"
    assert sorted(k[2] for k in ours) == ["lab-im2txt-operator-owned"] * 2 + ["lab-im2txt-operator-pods"] * 2
    vaps = [d for k, d in ours.items() if k[0] == "ValidatingAdmissionPolicy"]
    for vap in vaps:
        assert vap["spec"]["matchConditions"] == [{"name": "the-operator",
                                                   "expression": USERNAME.format(ns="ops", sa=sa)}]
    for binding in (d for k, d in ours.items() if k[0] == "ValidatingAdmissionPolicyBinding"):
        assert binding["spec"]["policyName"] == binding["metadata"]["name"]
    refused = helm("template", RELEASE, str(CHART), "--kube-version", "1.29.4", "--set",
                   "policies.operatorLimits.enabled=true", home=home, check=False)
    assert refused.returncode != 0 and "policies.operatorLimits needs Kubernetes 1.30" in refused.stderr


def test_metrics_network_policy_is_the_shipped_one_selecting_this_releases_pods(home: Path) -> None:
    docs = template(home, {"policies": {"metricsNetwork": {"enabled": True}}})
    (theirs,) = yaml.safe_load_all((POLICIES / "network" / "metrics.yaml").read_text())
    ours = policies(docs)[("NetworkPolicy", "im2txt-system", theirs["metadata"]["name"])]
    selector = ours["spec"]["podSelector"]["matchLabels"]
    pod_labels = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items() and selector["app.kubernetes.io/instance"] == RELEASE
    spec = {**ours["spec"], "podSelector": {"matchLabels": {k: v for k, v in selector.items()
                                                             if k != "app.kubernetes.io/instance"}}}
    assert shipped_labels({**ours, "spec": spec}, theirs) == theirs
    other = template(home, {"policies": {"metricsNetwork": {"enabled": True, "fromNamespace": "prom"}}})
    (ingress,) = policies(other)[("NetworkPolicy", "im2txt-system", theirs["metadata"]["name"])]["spec"]["ingress"]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prom"}}}]


def test_tensorboard_network_policy_in_each_namespace_with_trainings(home: Path) -> None:
    (theirs,) = yaml.safe_load_all((POLICIES / "network" / "tensorboard.yaml").read_text())
    name = theirs["metadata"]["name"]
    for values, namespaces in (({"namespaces": ["ml", "vision"]}, ["ml", "vision"]),
                               ({}, ["team-a"])):  # none listed: those of watchNamespaces
        docs = template(home, {"watchNamespaces": ["team-a"],
                               "policies": {"tensorboardNetwork": {"enabled": True, **values}}})
        ours = {k: d for k, d in policies(docs).items() if k[0] == "NetworkPolicy"}
        assert sorted(ours) == [("NetworkPolicy", ns, name) for ns in namespaces]
        for (_, ns, _), doc in ours.items():
            expected = {**theirs, "metadata": {**theirs["metadata"], "namespace": ns}}
            assert shipped_labels(doc, expected) == expected
    refused = helm("template", RELEASE, str(CHART), "--values",
                   str(values_file(home, {"policies": {"tensorboardNetwork": {"enabled": True}}})), home=home,
                   check=False)
    assert refused.returncode != 0 and "policies.tensorboardNetwork.namespaces is empty" in refused.stderr


def test_values_schema_refuses_a_bad_namespace_in_the_policies(home: Path) -> None:
    for values, field in (({"metricsNetwork": {"enabled": True, "fromNamespace": "Mon"}}, "fromNamespace"),
                          ({"tensorboardNetwork": {"enabled": True, "namespaces": ["a b"]}}, "namespaces"),
                          ({"operatorLimit": {"enabled": True}}, "operatorLimit")):
        out = helm("template", RELEASE, str(CHART), "--values", str(values_file(home, {"policies": values})),
                   home=home, check=False)
        assert out.returncode != 0 and field in out.stderr, (values, out.stderr)
