"""The CRD and the manifests on a real kube-apiserver: install, kubectl explain, validation by the server itself."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cluster_support import CRD_NAME, ROOT, Api, ApiError, apply_base
from control_plane import ControlPlane
from crd_corpus import BAD, GOOD_CASES

pytestmark = pytest.mark.timeout(180)


def test_base_applies_server_side_and_a_second_apply_changes_nothing(installed: ControlPlane, admin: Api) -> None:
    crd = admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    assert crd is not None
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True" and established["NamesAccepted"] == "True"
    role = admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/im2txt-operator")
    assert role is not None and admin.get("/api/v1/namespaces/im2txt-system/serviceaccounts/im2txt-operator")
    # Server-side apply of the same manifests again: every object unchanged (no drift for GitOps tools).
    before = crd["metadata"]["resourceVersion"], role["metadata"]["resourceVersion"]
    out = apply_base(installed)
    assert "customresourcedefinition.apiextensions.k8s.io/im2txttrainings.im2txt.dev serverside-applied" in out
    crd2 = admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    role2 = admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/im2txt-operator")
    assert (crd2["metadata"]["resourceVersion"], role2["metadata"]["resourceVersion"]) == before  # type: ignore[index]


def test_kubectl_explain_shows_the_field_docs(installed: ControlPlane) -> None:
    out = installed.kubectl("explain", "im2txttraining.spec.numberOfSteps").stdout
    assert "absolute global step" in " ".join(out.split())
    out = installed.kubectl("explain", "im2txttraining.spec").stdout
    for field in ("dataPath", "outputPath", "credentialsSecret", "stage2NumberOfSteps", "autoAdvance", "extraArgs"):
        assert field in out
    assert "UAI" in installed.kubectl("explain", "im2txttraining.spec.dataPath").stdout


def test_printer_columns_and_short_name(installed: ControlPlane, admin: Api, ns: str) -> None:
    admin.claim(ns, "data")
    created = admin.new_training(ns, "coco", {"dataPath": "pvc://data/in/", "outputPath": "pvc://data/out/"})
    failed = "stage 1 failed: trainer: --train_dir '/data/output/' is not writable: Permission denied (pod p, exit 2)"
    admin.request("PUT", admin.trainings(ns, "coco") + "/status", {**created, "status": {
        "stage": 1, "phase": "Running", "step": 4200, "uploadedStep": 4000, "loss": 2.4567, "progress": 0.4,
        "eta": "3d2h", "evaluation": {"generation": 1, "step": 4000, "perplexity": 12.3456, "stages": [
            {"stage": 1, "step": 4000, "perplexity": 12.3456, "bleu4": 0.21, "finalStep": 1000,
             "finalPerplexity": 20.5, "finalBleu4": 0.15}]}, "conditions": [
            {"type": "Ready", "status": "False", "reason": "BackoffLimitExceeded", "message": failed,
             "lastTransitionTime": "2026-12-06T00:00:00Z"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": failed,
             "lastTransitionTime": "2026-12-06T00:00:00Z"}]}})
    header, row = (line.split() for line in installed.kubectl("get", "i2t", "-n", ns).stdout.splitlines()[:2])
    assert header == ["NAME", "STAGE", "PHASE", "STEP", "UPLOADED", "LOSS", "PROGRESS", "ETA", "AGE"]
    assert row[:8] == ["coco", "1", "Running", "4200", "4000", "2.4567", "0.4", "3d2h"]
    # -o wide adds the validation perplexity and the Ready condition's message: here a failed trainer's own line.
    wide = installed.kubectl("get", "i2t", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-4:] == ["NODES", "GPUS", "PPL", "MESSAGE"] and wide[1].endswith(failed)
    assert wide[1].split()[11] == "12.3456"
    # status.evaluation is kept as written (no field pruned by the schema).
    assert admin.status(ns, "coco")["evaluation"]["stages"][0]["finalPerplexity"] == 20.5
    assert "coco" in installed.kubectl("get", "im2txt", "-n", ns).stdout  # the category


def _server_fields(err: ApiError) -> list[str]:
    return [c.get("field", "") for c in err.causes] + [err.body.get("message", "")]


@pytest.mark.parametrize(("obj", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_server_rejects_the_bad_corpus_naming_the_field(admin: Api, ns: str, obj: dict[str, Any],
                                                        field: str) -> None:
    body = copy.deepcopy(obj)
    status = body.pop("status", None)
    if status is not None:  # status is written through its subresource: create, then write status
        created = admin.create(admin.trainings(ns), body)
        with pytest.raises(ApiError) as info:
            admin.request("PUT", admin.trainings(ns, created["metadata"]["name"]) + "/status",
                          {**created, "status": status})
    else:
        with pytest.raises(ApiError) as info:
            admin.create(admin.trainings(ns), body)
    assert info.value.status in (400, 422), info.value.body
    if status is not None and admin.minor() <= 29:
        field = field.removeprefix("status.")  # 1.29 names a status field from status ("phase"), 1.36 from the object
    named = _server_fields(info.value)
    assert any(f == field or f.startswith(field) or field in f for f in named), json.dumps(info.value.body)


@pytest.mark.parametrize("obj", [g[1] for g in GOOD_CASES], ids=[g[0] for g in GOOD_CASES])
def test_server_accepts_the_good_cases(admin: Api, ns: str, obj: dict[str, Any]) -> None:
    # A dry run goes through the whole validation and admission chain, and leaves nothing for the operator of a
    # later test to reconcile while this namespace is being deleted.
    created = admin.request("POST", admin.trainings(ns), copy.deepcopy(obj),
                            params={"fieldValidation": "Strict", "dryRun": "All"})
    assert created["metadata"]["uid"] and created["spec"]


def test_examples_are_accepted_by_the_server(installed: ControlPlane, ns: str) -> None:
    for path in sorted((ROOT / "examples").glob("training*.yaml")):
        out = installed.kubectl("apply", "--server-side", "--dry-run=server", "-n", ns, "-f", str(path)).stdout
        assert "serverside-applied (server dry run)" in out, (path, out)
