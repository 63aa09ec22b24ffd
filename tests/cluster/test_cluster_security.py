"""Least privilege on a real API server: restricted training pods, no Secret reads by the operator."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster_support import ROOT, Api, ApiError, OperatorProcess, still, wait_for
from control_plane import ControlPlane

pytestmark = pytest.mark.timeout(240)

UFILE: dict[str, Any] = {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                         "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                         "gpus": 0}


def _secret(admin: Api, ns: str, data: dict[str, str]) -> None:
    admin.create(admin.core(ns, "secrets"), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ufile-keys"},
                                             "data": data})


def _live_pods(admin: Api, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in admin.pods(ns, job) if p["status"].get("phase") not in ("Succeeded", "Failed")]


def test_restricted_namespace_admits_the_pods_of_both_stages(admin: Api, ns: str, operator: OperatorProcess) -> None:
    admin.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    # The label is enforced: an ordinary pod is refused here.
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    # Admission looks up the pod's ServiceAccount first; the controller manager makes "default" after the namespace.
    wait_for(lambda: admin.get(admin.core(ns, "serviceaccounts", "default")), what="the default ServiceAccount")
    with pytest.raises(ApiError) as refused:
        admin.request("POST", admin.core(ns, "pods"), plain, params={"dryRun": "All"})
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body["message"]
    _secret(admin, ns, {"publicKey": "cHVi", "privateKey": "cHJpdg=="})
    admin.new_training(ns, "coco", UFILE)
    for stage in (1, 2):
        job = f"coco-stage{stage}"
        pods = wait_for(lambda j=job: _live_pods(admin, ns, j), timeout=60, what=f"the pod of {job}",
                        on_timeout=lambda j=job: str([e.get("message") for e in admin.events(ns, j)]))
        containers = pods[0]["spec"]["initContainers"] + pods[0]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["fetch", "sync", "trainer"]
        admin.finish_pods(ns, job)
    wait_for(lambda: admin.status(ns, "coco").get("phase") == "Succeeded", what="Succeeded")


def test_a_missing_secret_is_reported_without_reading_secrets(admin: Api, ns: str, operator: OperatorProcess) -> None:
    rules = admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/im2txt-operator")["rules"]  # type: ignore[index]
    assert not any("secrets" in r["resources"] for r in rules)
    admin.new_training(ns, "coco", UFILE)  # no Secret ufile-keys in this namespace
    pod = wait_for(lambda: _live_pods(admin, ns, "coco-stage1"), timeout=60, what="the stage-1 pod")[0]
    admin.config_error(ns, pod, 'secret "ufile-keys" not found')
    ready = wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("reason") == "SecretNotFound" and c,
                     what="Ready=False SecretNotFound")
    assert ready["status"] == "False"
    assert ready["message"].startswith(f"spec.credentialsSecret: Secret 'ufile-keys' not found in namespace '{ns}'; "
                                       "expected a Secret with keys publicKey and privateKey")
    assert admin.status(ns, "coco")["phase"] == "Pending"
    _secret(admin, ns, {"publicKey": "cHVi"})
    admin.config_error(ns, pod, f"couldn't find key privateKey in Secret {ns}/ufile-keys")
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("reason") == "SecretKeyMissing", what="key missing")
    admin.config_error(ns, pod, None)
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")
    assert admin.status(ns, "coco")["phase"] == "Running"
    assert admin.job_names(ns) == ["coco-stage1"]
    reasons = wait_for(lambda: "SpecValid" in (r := admin.event_reasons(ns, "coco")) and r, what="the events")
    assert reasons == ["Stage1Started", "SecretNotFound", "SecretKeyMissing", "SpecValid"]
    refused = re.findall(r'forbidden: User "[^"]*" cannot [^"]*"[^"]*"', operator.log)
    assert not refused, refused


def test_a_ufile_host_the_admin_did_not_allow_gets_no_job(admin: Api, ns: str,
                                                          scoped: Callable[..., OperatorProcess]) -> None:
    """spec.ufile names where the storage containers send requests signed with the training's keys: only the
    domains of the operator's --ufile-domains (UCloud's by default) get a Job."""
    _secret(admin, ns, {"publicKey": "cHVi", "privateKey": "cHJpdg=="})
    op = scoped()
    admin.new_training(ns, "coco", {**UFILE, "ufile": {"uploadSuffix": ".89.0.1", "downloadSuffix": ".89.0.1"}})
    ready = wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("status") == "False" and c,
                     what="Ready=False")
    assert ready["message"].startswith("spec.ufile.uploadSuffix: '.89.0.1' is not in a UFile domain this cluster "
                                       "allows"), ready
    op.reconciled(1)
    still(lambda: admin.job_names(ns) == [], 2)
    scoped("--ufile-domains=.89.0.1")  # the admin allows the host
    job = wait_for(lambda: admin.job(ns, "coco-stage1"), what="the Job, once the admin allows the host")
    assert ".89.0.1" in str(job["spec"]["template"]["spec"]["initContainers"])  # the storage containers' host
    wait_for(lambda: admin.condition(ns, "coco", "Ready").get("status") == "True", what="Ready again")


def test_plain_http_to_ufile_is_the_operators_flag_alone(admin: Api, ns: str,
                                                         scoped: Callable[..., OperatorProcess]) -> None:
    """The storage containers speak HTTPS; the admin's --ufile-insecure-http gives them --insecure-http."""

    def storage_args(name: str) -> list[list[str]]:
        pod = (wait_for(lambda: admin.job(ns, name), what=f"the Job {name}") or {})["spec"]["template"]["spec"]
        return [c["args"] for c in pod["initContainers"] if c["command"][:3] == ["python", "-m", "im2txt_storage"]]

    scoped()
    admin.new_training(ns, "https", UFILE)
    assert len(storage_args("https-stage1")) == 2  # fetch and sync
    assert all("--insecure-http" not in args for args in storage_args("https-stage1"))
    scoped("--ufile-insecure-http")
    admin.new_training(ns, "plain", {**UFILE, "outputPath": "ufile://im2txt-out/plain/"})
    assert len(storage_args("plain-stage1")) == 2
    assert all(args[-1] == "--insecure-http" for args in storage_args("plain-stage1"))


@pytest.fixture
def allowed_images(installed: ControlPlane, admin: Api, ns: str) -> Iterator[None]:
    """manifests/policies/allowed-images as a cluster admin applies it, with its example registries."""
    admin.needs_admission_policies()  # docs/security.md: the policy needs Kubernetes 1.30+
    folder = str(ROOT / "manifests" / "policies" / "allowed-images")
    installed.kubectl("apply", "--server-side", "-k", folder)
    try:
        yield
    finally:
        installed.kubectl("delete", "-k", folder, "--wait=true")
        # The objects are gone at once, but the API server's admission plugin drops the policy only when its own
        # informer catches up; until then a binding whose params are gone refuses every training (Deny on a
        # missing param). Later tests must start on a cluster that admits them again.
        wait_for(lambda: _admitted(admin, ns, "evil.example.org/miner:1"), what="the policy no longer enforced")


def _admitted(admin: Api, ns: str, image: str) -> bool:
    try:
        _dry_run(admin, ns, image)
    except ApiError as e:
        if e.status != 422:
            raise
        return False
    return True


def _dry_run(admin: Api, ns: str, image: str) -> None:
    admin.request("POST", admin.trainings(ns), {
        "apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "metadata": {"name": "coco"},
        "spec": {**UFILE, "image": image}}, params={"dryRun": "All", "fieldValidation": "Strict"})


def test_the_allowed_images_policy_refuses_other_registries(admin: Api, ns: str, allowed_images: None) -> None:
    # A policy takes effect a moment after it is created.
    wait_for(lambda: not _admitted(admin, ns, "evil.example.org/miner:1"), what="the policy enforced")
    with pytest.raises(ApiError) as refused:
        _dry_run(admin, ns, "evil.example.org/miner:1")
    message = refused.value.body["message"]
    assert "spec.image: evil.example.org/miner:1 is not from an allowed registry" in message, message
    assert "registry.example.com/ml/, ghcr.io/your-org/" in message
    with pytest.raises(ApiError):  # the CRD's default image is not from a listed registry either
        admin.request("POST", admin.trainings(ns), {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                                    "metadata": {"name": "coco"}, "spec": UFILE},
                      params={"dryRun": "All"})
    _dry_run(admin, ns, "registry.example.com/ml/im2txt-trainer:0.1.0")
    _dry_run(admin, ns, "ghcr.io/your-org/im2txt-trainer@sha256:" + "0" * 64)
    with pytest.raises(ApiError):  # a prefix match, not a substring one
        _dry_run(admin, ns, "evil.example.org/registry.example.com/ml/x:1")
