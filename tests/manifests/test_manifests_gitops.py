"""Argo CD and Flux read trainings right, checked with their real evaluators (tools/gitops-health: kstatus
status.Compute, Flux's CEL StatusEvaluator with the shipped healthCheckExprs, gopher-lua opened as Argo CD opens
it, with the Lua and the useOpenLibs setting argocd-cm.yaml ships); the GitOps manifests fit together.

The statuses rated here are the operator's own (lifecycle.decide on plain data, every state); the real-API test
(tests/cluster/test_cluster_gitops.py) drives trainings through the same states on a real API server.
"""

from __future__ import annotations

import re
from typing import Any

import argocd_cm
import pytest
import yaml
from gitops_support import ARGOCD_CM, LUA_KEY, OPEN_LIBS_KEY, Checks, Rating, rate, shipped
from manifests_support import ROOT, load_docs

from im2txt_operator.decisions import Problem
from im2txt_operator.job_state import JobState
from im2txt_operator.lifecycle import decide
from im2txt_operator.spec import parse_spec
from im2txt_operator.workloads import Hold

LUA_FILE = ROOT / "manifests" / "argocd" / "health-im2txttraining.lua"
FLUX = ROOT / "manifests" / "flux"
NOW = "2026-11-25T12:00:00Z"
SPEC = {"dataPath": "pvc://data/", "outputPath": "pvc://out/", "numberOfSteps": 1000000,
        "stage2NumberOfSteps": 3000000}
SECRET = Problem("spec.credentialsSecret", "SecretNotFound",
                 "spec.credentialsSecret: Secret 'ufile-keys' not found in namespace 'ml'; expected a Secret with "
                 "keys publicKey and privateKey (pod coco-stage1-x, container fetch: CreateContainerConfigError)")
CLAIM = Problem("spec.dataPath", "ClaimNotFound", "spec.dataPath: PersistentVolumeClaim 'data' not found in 'ml'")
REJECTED = Problem("spec.image", "JobRejected", "spec.image: the API server refused Job coco-stage1: denied")
INVALID = Problem("spec.dataPath", "InvalidSpec", "spec.dataPath: expected ufile:// or pvc://")


def training(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "im2txt.dev/v1alpha1",
        "kind": "Im2txtTraining",
        "metadata": {"name": "coco", "namespace": "ml", "generation": generation},
        "spec": dict(SPEC),
    }
    if status is not None:
        obj["status"] = status
    return obj


def job(stage: int, **kw: Any) -> JobState:
    return JobState(stage=stage, name=f"coco-stage{stage}", target=SPEC["numberOfSteps"] if stage == 1 else
                    SPEC["stage2NumberOfSteps"], **kw)


def operator_status(jobs: dict[int, JobState], problem: Problem | None = None, spec: dict[str, Any] | None = None,
                    previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status the operator writes for these Jobs (generation 1)."""
    settings = None if problem is INVALID else parse_spec({**SPEC, **(spec or {})})
    return decide("coco", settings, problem, 1, previous, jobs, NOW).status


DONE1 = operator_status({1: job(1, succeeded=True)})

# state -> the operator's status, and (kstatus, Flux, Argo CD)
STATES: list[tuple[str, dict[str, Any], tuple[str, str, str]]] = [
    ("queued (Job just created)", operator_status({}), ("InProgress", "Current", "Progressing")),
    ("starting (no pod ready)", operator_status({1: job(1, active=1)}), ("InProgress", "Current", "Progressing")),
    ("queued by Kueue (waiting for quota)", operator_status(
        {1: job(1, suspended=True, queue="gpu-queue", held=Hold("gpu-queue", "Pending", "insufficient unused quota"))},
        spec={"queueName": "gpu-queue"}), ("InProgress", "Current", "Progressing")),
    ("evicted by Kueue", operator_status(
        {1: job(1, suspended=True, queue="gpu-queue", held=Hold("gpu-queue", "Preempted", "by q", evicted=True))},
        spec={"queueName": "gpu-queue"}), ("InProgress", "Current", "Progressing")),
    ("stage 1 training", {**operator_status({1: job(1, active=1, ready=1)}), "step": 1200, "progress": 0.12,
                          "eta": "13d2h"}, ("InProgress", "Current", "Progressing")),
    ("retrying", operator_status({1: job(1, active=1, failed_pods=1)}), ("InProgress", "Current", "Progressing")),
    ("advancing to stage 2", DONE1, ("InProgress", "Current", "Progressing")),
    ("stage 2 training", operator_status({1: job(1, succeeded=True), 2: job(2, active=1, ready=1)}, previous=DONE1),
     ("InProgress", "Current", "Progressing")),
    ("succeeded", operator_status({1: job(1, succeeded=True), 2: job(2, succeeded=True)}),
     ("Current", "Current", "Healthy")),
    ("stopped after stage 1", operator_status({1: job(1, succeeded=True)}, spec={"autoAdvance": False}),
     ("Current", "Current", "Healthy")),
    ("suspended", operator_status({1: job(1, suspended=True)}, spec={"suspend": True}),
     ("Current", "Current", "Suspended")),
    ("failed", operator_status({1: job(1, failed=True, reason="BackoffLimitExceeded", message="too many")}),
     ("Failed", "Failed", "Degraded")),
    ("missing Secret", operator_status({1: job(1, active=1)}, SECRET), ("Failed", "Failed", "Degraded")),
    ("missing claim", operator_status({}, CLAIM), ("Failed", "Failed", "Degraded")),
    ("Job rejected", operator_status({}, REJECTED), ("Failed", "Failed", "Degraded")),
    ("invalid spec", operator_status({1: job(1, active=1)}, INVALID, previous={"phase": "Running"}),
     ("Failed", "Failed", "Degraded")),
]


@pytest.fixture(scope="module")
def ratings() -> dict[str, Rating]:
    return dict(zip([s[0] for s in STATES], rate([training(s[1]) for s in STATES]), strict=True))


@pytest.mark.parametrize(("state", "expected"), [(s[0], s[2]) for s in STATES], ids=[s[0] for s in STATES])
def test_each_state_as_kstatus_flux_and_argocd_rate_it(ratings: dict[str, Rating], state: str,
                                                        expected: tuple[str, str, str]) -> None:
    assert ratings[state].statuses == expected, ratings[state]


def test_after_a_spec_edit_every_tool_waits_for_the_operator() -> None:
    for status in (operator_status({1: job(1, succeeded=True), 2: job(2, succeeded=True)}),
                   operator_status({1: job(1, failed=True, reason="BackoffLimitExceeded")})):
        (r,) = rate([training(status, generation=2)])
        assert r.statuses == ("InProgress", "InProgress", "Progressing"), r
        assert r.kstatus.message == "Im2txtTraining generation is 2, but latest observed generation is 1"
        assert r.argocd.message == "Waiting for the im2txt operator to observe generation 2"


def test_before_the_operator_wrote_status() -> None:
    no_status, no_phase = rate([training(None), training({"observedGeneration": 1})])
    # Argo CD waits; Flux cannot evaluate status.phase without a status and keeps waiting (Unknown) until the
    # operator writes one; kstatus has nothing to go by and says Current (docs/gitops.md says so).
    assert no_status.argocd == no_phase.argocd
    assert no_status.argocd.status == "Progressing" and "operator" in no_status.argocd.message
    assert no_status.flux.status == "Unknown" and "no such attribute" in no_status.flux.message
    assert no_phase.flux.status == "InProgress"
    assert no_status.kstatus.status == no_phase.kstatus.status == "Current"


def test_messages_say_why_without_repeating_words(ratings: dict[str, Rating]) -> None:
    assert ratings["stage 1 training"].argocd.message == (
        "stage 1: Job coco-stage1 trains to global step 1000000; at step 1200 (0.1%), ETA 13d2h")
    assert ratings["starting (no pod ready)"].argocd.message == (
        "stage 1: Job coco-stage1 trains to global step 1000000 (no pod is ready yet)")
    assert ratings["starting (no pod ready)"].kstatus.message == ratings["starting (no pod ready)"].argocd.message
    assert ratings["retrying"].argocd.message.endswith("(retrying after 1 failed pod)")
    assert ratings["missing Secret"].argocd.message == ratings["missing Secret"].kstatus.message == SECRET.message
    assert ratings["Job rejected"].argocd.message == REJECTED.message
    assert ratings["failed"].argocd.message == ratings["failed"].kstatus.message == (
        "stage 1 Job coco-stage1 failed: BackoffLimitExceeded: too many")
    assert ratings["succeeded"].argocd.message == "stage 2 succeeded: the model reached global step 3000000"
    # Queued: every tool says why the stage waits, in Kueue's words.
    queued, evicted = ratings["queued by Kueue (waiting for quota)"], ratings["evicted by Kueue"]
    assert queued.kstatus.message == queued.argocd.message == (
        "stage 1 waits for Kueue admission in LocalQueue gpu-queue: insufficient unused quota")
    assert evicted.kstatus.message == evicted.argocd.message == (
        "stage 1 was evicted by Kueue (Preempted: by q); it resumes from its last checkpoint when admitted again")
    for state, r in ratings.items():
        for text in (r.argocd.message, r.kstatus.message):
            assert not re.search(r"\b(\w+ \d+): \1\b", text), (state, text)  # e.g. "stage 1: stage 1:"
            assert not re.search(r"\b(\w+) \1\b", text), (state, text)


def test_the_shipped_lua_runs_in_argo_cds_default_sandbox() -> None:
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    assert OPEN_LIBS_KEY not in data  # the script needs no more than base, table and package
    checks = shipped()
    assert not checks.use_open_libs
    for r in rate([training(s[1]) for s in STATES], checks):
        assert r.argocd.status != "Unknown", r


def test_the_sandbox_is_argo_cds() -> None:
    """The tool opens Lua as Argo CD does: string, math and io are nil unless useOpenLibs; os comes from require."""
    script = ('local hs = {} hs.status = "Healthy" hs.message = string.format("%d", math.floor(obj.spec.numberOf'
              'Steps)) return hs')
    flux = shipped().flux
    (sandboxed,) = rate([training(None)], Checks(script, False, flux))
    assert sandboxed.argocd.status == "Unknown"
    assert "attempt to index a non-table object(nil) with key 'format'" in sandboxed.argocd.message
    (open_libs,) = rate([training(None)], Checks(script, True, flux))
    assert open_libs.argocd.status == "Healthy" and open_libs.argocd.message == "1000000"
    probe = ('local hs = {} hs.status = "Healthy" hs.message = type(string) .. type(math) .. type(io) .. type(os) '
             '.. type(require("os").time) return hs')
    (r,) = rate([training(None)], Checks(probe, False, flux))
    assert r.argocd.message == "nilnilnilnilfunction"
    (r,) = rate([training(None)], Checks('return {status = "Fine"}', False, flux))
    assert (r.argocd.status, r.argocd.message) == ("Unknown", "Lua returned an invalid health status")


def test_unknown_phase_is_unknown() -> None:
    (r,) = rate([training({"phase": "Exploded", "observedGeneration": 1})])
    assert (r.argocd.status, r.argocd.message) == ("Unknown", "Unknown phase Exploded")


def test_argocd_cm_installs_exactly_the_lua_file() -> None:
    (cm,) = load_docs(ARGOCD_CM)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert cm["data"] == {LUA_KEY: LUA_FILE.read_text()}
    assert ARGOCD_CM.read_text() == argocd_cm.render(LUA_FILE.read_text()), "stale: run `make manifests`"


def test_argocd_application_points_at_the_base() -> None:
    apps = {d["metadata"]["name"]: d for d in load_docs(ROOT / "manifests" / "argocd" / "application.yaml")}
    operator = apps["im2txt-operator"]
    assert operator["apiVersion"] == "argoproj.io/v1alpha1" and operator["kind"] == "Application"
    assert (ROOT / operator["spec"]["source"]["path"] / "kustomization.yaml").exists()
    assert operator["spec"]["destination"]["server"]
    # Trainings removed from Git are not pruned (that would delete their running Jobs).
    assert apps["im2txt-trainings"]["spec"]["syncPolicy"]["automated"]["prune"] is False


# --- Flux ----------------------------------------------------------------------------------------------------


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
    (check,) = trainings["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("im2txt.dev/v1alpha1", "Im2txtTraining")
    assert dict(shipped().flux) == {k: check[k] for k in ("current", "inProgress", "failed")}


def test_flux_kustomization_lists_every_flux_file() -> None:
    k = yaml.safe_load((FLUX / "kustomization.yaml").read_text())
    assert sorted(k["resources"]) == sorted(p.name for p in FLUX.glob("*.yaml") if p.name != "kustomization.yaml")
