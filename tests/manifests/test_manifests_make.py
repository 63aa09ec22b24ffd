"""make images / deploy helpers: clear failures without Docker, overlays that pin the image and keep the CRD."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from manifests_support import ROOT, kubectl_kustomize


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def _need_make() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


def test_images_without_docker_says_so() -> None:
    out = make("images", "DOCKER=im2txt-no-such-docker")
    assert out.returncode != 0
    assert "'im2txt-no-such-docker' is not installed" in out.stderr


def test_images_without_a_docker_engine_says_so(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = make("images", f"DOCKER={fake}")
    assert out.returncode != 0
    assert "cannot reach a container engine" in out.stderr


def test_images_builds_both_dockerfiles_with_registry_and_tag() -> None:
    out = make("-n", "images", "IMAGE_REGISTRY=reg.example.com/team", "TAG=v9")
    assert out.returncode == 0, out.stderr
    assert "build -f operator/Dockerfile -t reg.example.com/team/im2txt-operator:v9 ." in out.stdout
    assert "build -f trainer/Dockerfile -t reg.example.com/team/im2txt-trainer:v9 ." in out.stdout


def test_deploy_uses_server_side_apply_and_undeploy_keeps_the_crd() -> None:
    deploy = make("-n", "deploy")
    assert "apply --server-side" in deploy.stdout and " -k build/deploy" in deploy.stdout
    # The wait is the leader check, not `kubectl rollout status`, which a Ready standby satisfies (issue 21.1).
    assert "tools/deploy_check.py --kubectl=kubectl" in deploy.stdout and "kubectl rollout status" not in deploy.stdout
    undeploy = make("-n", "undeploy")
    assert "--without-crd" in undeploy.stdout and "delete --ignore-not-found -k build/deploy" in undeploy.stdout
    assert "deletes EVERY Im2txtTraining" in undeploy.stdout
    assert "finalizer" not in undeploy.stdout  # the operator sets none (issue 21.5)
    refused = make("undeploy-crd")
    assert refused.returncode != 0 and "CONFIRM=yes" in refused.stderr


@pytest.mark.parametrize(("without_crd", "domains"), [(False, ""), (True, ""), (False, ".lab.example,.89.0.1"),
                                                      (True, ".lab.example")])
def test_overlay_pins_the_image(without_crd: bool, domains: str) -> None:
    out_dir = ROOT / "build" / "test-overlay"
    args = [str(ROOT / "tools" / "deploy_overlay.sh"), str(out_dir), "registry.example.com:5000/im2txt/op:v2"]
    subprocess.run(args + (["--without-crd"] if without_crd else []), check=True, timeout=30,
                   env={**os.environ, "UFILE_DOMAINS": domains})
    try:
        kustomization = yaml.safe_load((out_dir / "kustomization.yaml").read_text())
        assert kustomization["images"] == [
            {"name": "im2txt-operator", "newName": "registry.example.com:5000/im2txt/op", "newTag": "v2"}
        ]
        docs = kubectl_kustomize(out_dir)
        kinds = {d["kind"] for d in docs}
        assert ("CustomResourceDefinition" in kinds) is (not without_crd)
        assert {"Namespace", "ClusterRole", "Deployment"} <= kinds
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example.com:5000/im2txt/op:v2"
        # make deploy UFILE_DOMAINS=...: the operator allows those UFile hosts instead of UCloud's own.
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[-1] == f"--ufile-domains={domains}" if domains else not any("ufile-domains" in a for a in args)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
