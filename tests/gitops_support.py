"""The real GitOps health evaluators for tests: tools/gitops-health (kstatus status.Compute, Flux's CEL
StatusEvaluator, gopher-lua opened as Argo CD opens it) with the health checks this project ships.

The tool is built once per machine by tools/gitops-health/build.sh (Go; cached like tools/envtest). Without Go the
tests that use it fail, with the reason: they are the only check that Argo CD and Flux read trainings right.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from go_tools import built

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tools" / "gitops-health" / "build.sh"
ARGOCD_CM = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
FLUX_TRAININGS = ROOT / "manifests" / "flux" / "trainings.yaml"
LUA_KEY = "resource.customizations.health.im2txt.dev_Im2txtTraining"
OPEN_LIBS_KEY = "resource.customizations.useOpenLibs.im2txt.dev_Im2txtTraining"
TRAINING_KIND = ("im2txt.dev/v1alpha1", "Im2txtTraining")


@dataclass(frozen=True)
class Checks:
    """The health checks a user installs: Argo CD's Lua (and whether it gets all libraries), Flux's expressions."""

    lua: str
    use_open_libs: bool
    flux: Mapping[str, str]


def shipped() -> Checks:
    """What manifests/argocd/argocd-cm.yaml and manifests/flux/trainings.yaml install, read from those files."""
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    kustomization = next(d for d in yaml.safe_load_all(FLUX_TRAININGS.read_text())
                         if d and d.get("kind") == "Kustomization")
    (check,) = [c for c in kustomization["spec"]["healthCheckExprs"] if (c["apiVersion"], c["kind"]) == TRAINING_KIND]
    flux = {k: check[k] for k in ("current", "inProgress", "failed") if k in check}
    # Argo CD enables the libraries only for the string "true" (ResourceOverride.UseOpenLibs from argocd-cm).
    return Checks(data[LUA_KEY], str(data.get(OPEN_LIBS_KEY, "false")).lower() == "true", flux)


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str


@dataclass(frozen=True)
class Rating:
    """One object as each tool rates it."""

    kstatus: Verdict
    flux: Verdict
    argocd: Verdict

    @property
    def statuses(self) -> tuple[str, str, str]:
        return self.kstatus.status, self.flux.status, self.argocd.status


@functools.cache
def binary() -> Path:
    """The built tool; builds it on first use (a few minutes cold, then cached across runs)."""
    return built(BUILD, "the real kstatus, Flux and Argo CD evaluators these tests use", 900)


def rate(objects: Sequence[Mapping[str, Any]], checks: Checks | None = None) -> list[Rating]:
    """Each object as kstatus, Flux (with ``checks.flux``) and Argo CD (with ``checks.lua``) rate it."""
    checks = checks or shipped()
    request = {"objects": list(objects), "lua": checks.lua, "useOpenLibs": checks.use_open_libs,
               "flux": dict(checks.flux)}
    done = subprocess.run([str(binary())], input=json.dumps(request), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [Rating(*(Verdict(r[tool]["status"], r[tool]["message"]) for tool in ("kstatus", "flux", "argocd")))
            for r in json.loads(done.stdout)]

