"""Shared helpers for the manifest tests: file discovery, YAML loading, an offline kustomize build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))  # tools/ holds scripts, not a package

CRD_PATH = ROOT / "crds" / "im2txt.dev_im2txttrainings.yaml"
BASE = ROOT / "manifests" / "base"

# Kubernetes versions every built-in manifest must validate against: the oldest we support and the newest
# kubernetes-validate knows.
K8S_VERSIONS = ("1.32.0", "latest")


def load_docs(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifest_files() -> list[Path]:
    """Every YAML file under manifests/ and examples/."""
    files = sorted((ROOT / "manifests").rglob("*.yaml")) + sorted((ROOT / "examples").rglob("*.yaml"))
    return [f for f in files if f.is_file()]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


class KustomizeError(Exception):
    pass


_SUPPORTED = {"apiVersion", "kind", "resources", "images", "patches"}


def kustomize_build(folder: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize folder` outputs, for the subset of kustomize our kustomizations use.

    Refuses any other kustomization feature (so it cannot silently differ from kustomize) and, like kustomize,
    any resource file outside the kustomization's folder.
    """
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _SUPPORTED
    if unknown:
        raise KustomizeError(f"{rel(folder)}/kustomization.yaml: unsupported by the offline build: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            docs.extend(kustomize_build(target))
        elif not target.is_relative_to(folder.resolve()):
            raise KustomizeError(f"{rel(folder)}: {entry} is outside the kustomization's folder")
        else:
            docs.extend(load_docs(target))
    for patch in kustomization.get("patches", []):
        docs = [_apply_patch(folder, patch, d) for d in docs]
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    return docs


def _apply_patch(folder: Path, patch: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON6902 patch (inline, with a kind/name target); other patch forms are refused."""
    target = patch.get("target") or {}
    if set(patch) != {"target", "patch"} or not set(target) <= {"kind", "name"}:
        raise KustomizeError(f"{rel(folder)}: only inline JSON6902 patches with a kind/name target are supported")
    if target.get("kind", doc["kind"]) != doc["kind"] or target.get("name", doc["metadata"]["name"]) != doc[
        "metadata"
    ]["name"]:
        return doc
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{rel(folder)}: strategic-merge patches are not supported by the offline build")
    return jsonpatch.apply_patch(doc, operations)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` cannot run (the offline build still ran)")
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {rel(folder)} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def key(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = doc.get("metadata", {})
    return doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"]


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    import crd_validate

    return crd_validate.load_crd(CRD_PATH)


@pytest.fixture(scope="session")
def base_docs() -> list[dict[str, Any]]:
    return kustomize_build(BASE)


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


# --- validation and RBAC helpers shared by the tests -------------------------------------------------------


def _version(v: str) -> str:
    return kubernetes_validate.latest_version() if v == "latest" else v


def k8s_validate(doc: dict[str, Any], version: str) -> None:
    """Raise unless `doc` is valid (strict: unknown fields are errors) for Kubernetes `version`."""
    try:
        kubernetes_validate.validate(doc, _version(version), strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        raise AssertionError(f"{doc['kind']}/{doc['metadata'].get('name')}: {path}: {e.message}") from None


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    """Kubernetes RBAC's rule matching (wildcards included, so a stray '*' would show up here too); a rule with
    resourceNames matches only a request for one of those names."""
    for rule in rules:
        if rule.get("resourceNames") and name not in rule["resourceNames"]:
            continue
        if (
            (group in rule["apiGroups"] or "*" in rule["apiGroups"])
            and (resource in rule["resources"] or "*" in rule["resources"])
            and (verb in rule["verbs"] or "*" in rule["verbs"])
        ):
            return True
    return False
