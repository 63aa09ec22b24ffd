"""Every manifest under manifests/ and examples/ is valid for the API server that will receive it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import crd_validate
import pytest
import yaml
from manifests_support import (
    BASE,
    CRD_PATH,
    K8S_VERSIONS,
    ROOT,
    find,
    k8s_validate,
    key,
    kubectl_kustomize,
    kustomize_build,
    load_docs,
    manifest_files,
    rel,
)

# Custom resources of other projects: no schema here, so they are checked for shape in their own tests
# (test_manifests_gitops.py; the KServe InferenceService in tests/trainer/test_trainer_export.py); here only
# that they name themselves.
FOREIGN = {
    ("argoproj.io/v1alpha1", "Application"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
}
KUSTOMIZE = "kustomize.config.k8s.io/v1beta1"


def documents() -> list[tuple[str, int, dict[str, Any]]]:
    return [(rel(f), i, d) for f in manifest_files() for i, d in enumerate(load_docs(f))]


DOCS = documents()


def test_there_are_manifests_to_check() -> None:
    files = {f for f, _, _ in DOCS}
    for expected in (
        "manifests/base/deployment.yaml",
        "manifests/base/rbac.yaml",
        "examples/training.yaml",
        "examples/training-ufile.yaml",
        "examples/training-pvc.yaml",
        "examples/secret.yaml",
        "examples/inferenceservice.yaml",
        "manifests/argocd/application.yaml",
        "manifests/flux/trainings.yaml",
        "manifests/monitoring/podmonitor.yaml",
    ):
        assert expected in files


@pytest.mark.parametrize(("path", "index", "doc"), DOCS, ids=[f"{p}#{i}" for p, i, _ in DOCS])
def test_manifest_is_valid(path: str, index: int, doc: dict[str, Any], crd: dict[str, Any]) -> None:
    assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), f"{path}#{index}: no apiVersion/kind"
    api_kind = (doc["apiVersion"], doc["kind"])
    if api_kind == (KUSTOMIZE, "Kustomization"):
        return  # built (and its output validated) by test_kustomization_builds
    assert doc.get("metadata", {}).get("name"), f"{path}#{index}: metadata.name is missing"
    if doc["kind"] == "Im2txtTraining":
        assert crd_validate.validate(crd, doc) == [], path
    elif api_kind in FOREIGN:
        assert isinstance(doc.get("spec"), dict), f"{path}: {doc['kind']} without spec"
    else:
        for version in K8S_VERSIONS:
            k8s_validate(doc, version)  # SchemaNotFoundError (an unknown built-in kind) fails too


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "manifests").rglob("kustomization.yaml"))


@pytest.mark.parametrize("folder", kustomizations(), ids=lambda p: rel(p))
def test_kustomization_builds(folder: Path, crd: dict[str, Any]) -> None:
    docs = kustomize_build(folder)
    assert docs, f"{rel(folder)} builds to nothing"
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in FOREIGN:
            continue
        for version in K8S_VERSIONS:
            k8s_validate(doc, version)


@pytest.mark.parametrize("folder", kustomizations(), ids=lambda p: rel(p))
def test_kubectl_kustomize_agrees_with_the_offline_build(folder: Path) -> None:
    ours = {key(d): d for d in kustomize_build(folder)}
    theirs = {key(d): d for d in kubectl_kustomize(folder)}
    assert sorted(ours) == sorted(theirs)
    for k, doc in ours.items():
        assert doc == theirs[k], f"{k} differs between kubectl kustomize and the offline build"


def test_base_holds_everything_to_run_the_operator(base_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in base_docs)
    assert kinds == sorted(
        ["Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment",
         "Role", "RoleBinding", "PodDisruptionBudget"]  # Role/RoleBinding: the Lease of leader election
    )
    namespaced = [d for d in base_docs if d["kind"] in ("ServiceAccount", "Deployment", "Role", "RoleBinding",
                                                        "PodDisruptionBudget")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"im2txt-system"}
    deployment = find(base_docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "im2txt-operator:0.1.0"


def test_the_crd_in_the_base_is_the_crd(base_docs: list[dict[str, Any]]) -> None:
    assert find(base_docs, "CustomResourceDefinition") == yaml.safe_load(CRD_PATH.read_text())


def test_kubernetes_validate_is_strict() -> None:
    """The validator used above does reject what the API server rejects (so its passes mean something)."""
    deployment = find(load_docs(BASE / "deployment.yaml"), "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(AssertionError, match="containerPort"):
        k8s_validate(typo, "1.32.0")
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(AssertionError, match="securityContex"):
        k8s_validate(unknown, "1.32.0")
