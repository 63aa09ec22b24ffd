"""helm for the chart's tests: the real CLI (helm.sh/helm/v4 at the release pinned in tools/helm/go.mod).

tools/helm/build.sh builds it once per machine (Go; cached like tools/envtest). Without Go the tests that use it
fail with the reason: they are the only check that the chart installs what manifests/base installs.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from go_tools import built

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tools" / "helm" / "build.sh"
CHART = ROOT / "charts" / "im2txt-operator"
RELEASE = "im2txt-operator"
# Labels a Helm chart carries that the kustomize base does not (Helm's and the chart's conventions).
HELM_LABELS = frozenset({"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
                         "app.kubernetes.io/version"})


@functools.cache
def binary() -> Path:
    """The built helm; builds it on first use (a few minutes cold, then cached across runs)."""
    return built(BUILD, "helm, which the chart's tests run", 1200)


def helm(*args: str, home: Path, kubeconfig: Path | None = None, check: bool = True,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Runs helm with its config, cache and data under ``home`` (nothing of the user's helm setup leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env |= {"HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run([str(binary()), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def values_file(folder: Path, values: Mapping[str, Any]) -> Path:
    path = folder / f"values-{len(list(folder.glob('values-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return path


def template(home: Path, values: Mapping[str, Any] | None = None, namespace: str = "im2txt-system",
             extra: Sequence[str] = (), release: str = RELEASE) -> list[dict[str, Any]]:
    """`helm template` of the chart: the objects it would install."""
    args = ["template", release, str(CHART), "--namespace", namespace, *extra]
    if values:
        args += ["--values", str(values_file(home, values))]
    return [d for d in yaml.safe_load_all(helm(*args, home=home).stdout) if d]


def without_helm_labels(doc: Any) -> Any:
    """``doc`` with HELM_LABELS removed from every label map and label selector (metadata, pod template,
    selectors, affinity terms): the chart adds instance to its selectors so that two releases never select each
    other's pods."""
    if isinstance(doc, list):
        return [without_helm_labels(d) for d in doc]
    if not isinstance(doc, dict):
        return doc
    return {k: ({n: v2 for n, v2 in v.items() if n not in HELM_LABELS} if k in ("labels", "matchLabels")
                and isinstance(v, dict) else without_helm_labels(v)) for k, v in doc.items()}


def by_kind_name(docs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for d in docs:
        k = (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
        assert k not in out, f"{k} rendered twice"
        out[k] = d
    return out


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1, sort_keys=True)
