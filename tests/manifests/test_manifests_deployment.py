"""The operator Deployment: how it runs (contracts.md) and how it is locked down (restricted PSS)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from typing import Any

import pytest
from manifests_support import ROOT, find, load_docs


@pytest.fixture(scope="module")
def deployment(base_docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(base_docs, "Deployment", "im2txt-operator")


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def test_two_replicas_one_acting_by_leader_election(deployment: dict[str, Any], container: dict[str, Any],
                                                    pod: dict[str, Any], base_docs: list[dict[str, Any]]) -> None:
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in container["args"]
    # The Lease holder is the pod, in the pod's namespace (the downward API).
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    # A rolling update never leaves no operator (the standby takes over when the old leader releases the Lease).
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pdb = find(base_docs, "PodDisruptionBudget", "im2txt-operator")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_selector_matches_pod_labels(deployment: dict[str, Any]) -> None:
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items()


def test_runs_the_operator_on_all_namespaces(container: dict[str, Any]) -> None:
    assert container["command"] == ["python", "-m", "im2txt_operator", "run"]
    assert "--all-namespaces" in container["args"]


def test_ports_and_probes(container: dict[str, Any]) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe


def test_resources_requested_and_limited(container: dict[str, Any]) -> None:
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]


def test_pod_security_restricted(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for volume in pod["volumes"]:
        assert "hostPath" not in volume


def test_tmp_is_the_only_writable_path(pod: dict[str, Any], container: dict[str, Any]) -> None:
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_namespace_enforces_restricted_pod_security(base_docs: list[dict[str, Any]]) -> None:
    ns = find(base_docs, "Namespace", "im2txt-system")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_podmonitor_scrapes_the_metrics_port(base_docs: list[dict[str, Any]], container: dict[str, Any]) -> None:
    (monitor,) = load_docs(ROOT / "manifests" / "monitoring" / "podmonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    deployment = find(base_docs, "Deployment", "im2txt-operator")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [deployment["metadata"]["namespace"]]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    # The loss series' own namespace label (the training's) wins over the target's (the operator's), so the
    # dashboard's loss legend names the training's namespace, not im2txt-system for every training.
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] in {p["name"] for p in container["ports"] if p["containerPort"] == 9090}


# --- operator/Dockerfile ---------------------------------------------------------------------------------

DOCKERFILE = (ROOT / "operator" / "Dockerfile").read_text()
TEST_ONLY = {"kmock", "jsonschema", "cel-python"}


def _runtime_requirements() -> list[str]:
    """What the image installs: requirements/operator.txt, whole."""
    assert "pip install -r /src/requirements/operator.txt" in DOCKERFILE, "the Dockerfile's install step moved"
    text = (ROOT / "requirements" / "operator.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_image_base_user_and_entrypoint() -> None:
    froms = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert froms and all(f == "python:3.11-slim" for f in froms)
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users, "the image must not run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric non-root user (runAsNonRoot needs a number)"
    assert re.search(r'^ENTRYPOINT \["python", "-m", "im2txt_operator", "run"\]$', DOCKERFILE, re.M)


def test_image_installs_no_test_only_packages() -> None:
    runtime = {_dist_name(r) for r in _runtime_requirements()}
    assert "kopf" in runtime and "kubernetes" in runtime
    assert not runtime & TEST_ONLY


def test_image_has_every_third_party_module_the_operator_imports() -> None:
    """A module im2txt_operator imports at run time must come from a package the image installs."""
    runtime = {_dist_name(r) for r in _runtime_requirements()}
    by_module = importlib.metadata.packages_distributions()
    missing = {}
    storage_modules = set()
    for path in (ROOT / "operator" / "im2txt_operator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "im2txt_storage":  # copied into the image file by file, see the next test
                    storage_modules.add(name)
                    continue
                dists = {d.lower().replace("_", "-") for d in by_module.get(top, [])}
                if dists and not dists & runtime and top != "im2txt_operator":
                    missing[f"{path.name}: {top}"] = sorted(dists)
    assert not missing, f"imported by the operator but not installed in the image: {missing}"
    assert storage_modules == {"im2txt_storage.paths"}, storage_modules


def test_image_copies_the_storage_path_parser_and_it_needs_no_sdk() -> None:
    """The operator shares im2txt_storage.paths; the image copies just that module, so it must import only stdlib."""
    assert re.search(r"^COPY trainer/im2txt_storage/__init__.py trainer/im2txt_storage/paths.py "
                     r"/opt/app/im2txt_storage/$", DOCKERFILE, re.M)
    ignore = (ROOT / "operator" / "Dockerfile.dockerignore").read_text().split()
    assert "!trainer/im2txt_storage/paths.py" in ignore and "!trainer/im2txt_storage/__init__.py" in ignore
    for module in ("__init__.py", "paths.py"):
        tree = ast.parse((ROOT / "trainer" / "im2txt_storage" / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name.split(".")[0] in sys.stdlib_module_names | {"__future__"}, (module, name)
