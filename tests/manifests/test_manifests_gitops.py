"""Argo CD and Flux: the health check Lua and CEL run on sample trainings; the GitOps manifests fit together."""

from __future__ import annotations

from typing import Any

import argocd_cm
import celpy
import pytest
import yaml
from lupa import lua51  # Argo CD runs health checks with gopher-lua, a Lua 5.1
from manifests_support import ROOT, load_docs

LUA_FILE = ROOT / "manifests" / "argocd" / "health-im2txttraining.lua"
CM_FILE = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any], source: str | None = None) -> dict[str, str]:
    """Run the health check as Argo CD does: `obj` is a global, the script returns {status, message}."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(source if source is not None else LUA_FILE.read_text())
    return {k: result[k] for k in ("status", "message") if result[k] is not None}


def training(status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "im2txt.dev/v1alpha1",
        "kind": "Im2txtTraining",
        "metadata": {"name": "coco", "namespace": "ml", "generation": generation},
        "spec": {"dataPath": "ufile://bk/uai/im2txt/data/", "outputPath": "ufile://bk/uai/im2txt/output/"},
    }
    if status is not None:
        obj["status"] = {"observedGeneration": generation, **status}
    return obj


RUNNING = {"phase": "Running", "stage": 1, "step": 1200, "target": 1000000, "progress": 0.12, "eta": "13d2h"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Succeeded", "stage": 2, "step": 3000000, "target": 3000000, "progress": 100.0}, "Healthy"),
        (RUNNING, "Progressing"),
        ({"phase": "Pending", "stage": 1}, "Progressing"),
        ({"phase": "Failed", "stage": 1, "message": "Job coco-stage1 failed: BackoffLimitExceeded"}, "Degraded"),
        ({"phase": "Suspended", "stage": 2, "step": 1500000, "target": 3000000}, "Suspended"),
    ],
)
def test_each_phase_maps_to_its_health(status: dict[str, Any], expected: str) -> None:
    assert health(training(status))["status"] == expected


def test_no_status_yet_is_progressing() -> None:
    hs = health(training(None))
    assert hs["status"] == "Progressing"
    assert "operator" in hs["message"]
    hs = health(training({}))  # a status without a phase (e.g. only observedGeneration)
    assert hs["status"] == "Progressing"


def test_running_message_says_stage_step_progress_and_eta() -> None:
    hs = health(training({**RUNNING, "message": "training"}))
    assert hs["message"] == "Running: stage 1, step 1200/1000000, 0.1%, ETA 13d2h: training"


def test_failed_message_from_status_message() -> None:
    hs = health(training({"phase": "Failed", "stage": 2, "message": "Job coco-stage2 failed: DeadlineExceeded"}))
    assert hs == {"status": "Degraded", "message": "Failed: stage 2: Job coco-stage2 failed: DeadlineExceeded"}


def test_failed_message_falls_back_to_the_failed_condition() -> None:
    conditions = [
        {"type": "Stage1Complete", "status": "True", "reason": "JobSucceeded", "message": "stage 1 done"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "pod failed 4 times"},
    ]
    hs = health(training({"phase": "Failed", "stage": 2, "conditions": conditions}))
    assert hs == {"status": "Degraded", "message": "Failed: stage 2: pod failed 4 times"}


def test_stale_status_waits_for_the_operator() -> None:
    obj = training({"phase": "Succeeded", "stage": 2})
    obj["metadata"]["generation"] = 2  # spec changed after the status was written
    hs = health(obj)
    assert hs["status"] == "Progressing" and "generation 2" in hs["message"]


def test_unknown_phase_is_unknown() -> None:
    assert health(training({"phase": "Exploded"}))["status"] == "Unknown"


def test_argocd_cm_installs_exactly_the_lua_file() -> None:
    (cm,) = load_docs(CM_FILE)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert cm["data"] == {"resource.customizations.health.im2txt.dev_Im2txtTraining": LUA_FILE.read_text()}
    assert CM_FILE.read_text() == argocd_cm.render(LUA_FILE.read_text()), "stale: run `make manifests`"
    # The embedded copy behaves like the file.
    embedded = cm["data"]["resource.customizations.health.im2txt.dev_Im2txtTraining"]
    assert health(training(RUNNING), embedded) == health(training(RUNNING))


def test_argocd_application_points_at_the_base() -> None:
    apps = {d["metadata"]["name"]: d for d in load_docs(ROOT / "manifests" / "argocd" / "application.yaml")}
    operator = apps["im2txt-operator"]
    assert operator["apiVersion"] == "argoproj.io/v1alpha1" and operator["kind"] == "Application"
    assert (ROOT / operator["spec"]["source"]["path"] / "kustomization.yaml").exists()
    assert operator["spec"]["destination"]["server"]
    # Trainings removed from Git are not pruned (that would delete their running Jobs).
    assert apps["im2txt-trainings"]["spec"]["syncPolicy"]["automated"]["prune"] is False


# --- Flux ----------------------------------------------------------------------------------------------------

FLUX = ROOT / "manifests" / "flux"


def flux_docs() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(FLUX.glob("*.yaml")):
        for d in load_docs(path):
            if d["apiVersion"].endswith("toolkit.fluxcd.io/v1"):
                docs[f"{d['kind']}/{d['metadata']['name']}"] = d
    return docs


def test_flux_operator_kustomization_waits_for_health() -> None:
    docs = flux_docs()
    source = docs["GitRepository/im2txt-operator"]
    operator = docs["Kustomization/im2txt-operator"]
    assert operator["spec"]["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    assert operator["spec"]["wait"] is True and operator["spec"]["timeout"]
    assert (ROOT / operator["spec"]["path"] / "kustomization.yaml").exists()
    trainings = docs["Kustomization/im2txt-trainings"]
    assert trainings["spec"]["dependsOn"] == [{"name": "im2txt-operator"}]
    assert trainings["spec"]["prune"] is False


def _flux_health(obj: dict[str, Any]) -> str:
    """Flux's order: inProgress, then failed, then current; nothing matching means still in progress."""
    (check,) = flux_docs()["Kustomization/im2txt-trainings"]["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("im2txt.dev/v1alpha1", "Im2txtTraining")
    env = celpy.Environment()
    activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
    for field, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        result = env.program(env.compile(check[field])).evaluate(activation)
        assert not isinstance(result, celpy.CELEvalError), (field, result)
        if bool(result):
            return verdict
    return "InProgress"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Pending"}, "InProgress"),
        (RUNNING, "Current"),
        ({"phase": "Succeeded", "stage": 2}, "Current"),
        ({"phase": "Suspended", "stage": 1}, "Current"),
        ({"phase": "Failed", "stage": 1, "message": "boom"}, "Failed"),
        ({}, "InProgress"),
    ],
)
def test_flux_health_expressions(status: dict[str, Any], expected: str) -> None:
    assert _flux_health(training(status)) == expected


def test_flux_waits_for_a_status_of_the_latest_generation() -> None:
    obj = training({"phase": "Succeeded", "stage": 2})
    obj["metadata"]["generation"] = 3
    assert _flux_health(obj) == "InProgress"


def test_flux_kustomization_lists_every_flux_file() -> None:
    k = yaml.safe_load((FLUX / "kustomization.yaml").read_text())
    assert sorted(k["resources"]) == sorted(p.name for p in FLUX.glob("*.yaml") if p.name != "kustomization.yaml")
