"""cli: render previews a training's children offline and names a bad field."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import yaml
from operator_support import HERE, ROOT

from im2txt_operator.cli import render


def test_render_prints_both_stages_offline() -> None:
    out = io.StringIO()
    assert render([str(HERE / "data" / "training-ufile.yaml")], out) == 0
    jobs = list(yaml.safe_load_all(out.getvalue()))
    assert [j["metadata"]["name"] for j in jobs] == ["coco-stage1", "coco-stage2", "coco-export", "coco-evaluation"]
    # The golden Job is built for a training with a uid; offline, render names the placeholder instead.
    golden = (HERE / "golden" / "training-ufile-stage2.yaml").read_text()
    uid = yaml.safe_load(golden)["metadata"]["ownerReferences"][0]["uid"]
    assert jobs[1]["spec"] == yaml.safe_load(golden.replace(uid, "<uid of the training>"))["spec"]


def test_render_shows_the_tensorboard_when_enabled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((HERE / "data" / "training-ufile.yaml").read_text())
    doc["spec"]["tensorboard"] = {"enabled": True}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert render([str(path)], out) == 0
    kinds = [(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out.getvalue())]
    assert kinds == [("Job", "coco-stage1"), ("Job", "coco-stage2"), ("Job", "coco-export"),
                     ("Deployment", "coco-tensorboard"), ("Service", "coco-tensorboard"),
                     ("Deployment", "coco-evaluation")]


def test_render_stops_after_stage_1_without_auto_advance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((HERE / "data" / "training-pvc.yaml").read_text())
    doc["spec"]["autoAdvance"] = False
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert render([str(path)], out) == 0
    assert [j["metadata"]["name"] for j in yaml.safe_load_all(out.getvalue())] == ["coco-pvc-stage1",
                                                                                  "coco-pvc-evaluation"]


def test_render_cli_reports_the_bad_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: im2txt.dev/v1alpha1\nkind: Im2txtTraining\nmetadata: {name: x}\n"
                    "spec: {dataPath: 's3://b/x/', outputPath: 'pvc://o/'}\n")
    run = subprocess.run([sys.executable, "-m", "im2txt_operator", "render", str(path)], capture_output=True,
                         text=True, cwd=ROOT / "operator", env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent"})
    assert run.returncode == 2
    assert "spec.dataPath: expected ufile://<bucket>/<prefix>/ or pvc://<claim>/<sub/path>" in run.stderr


def test_the_identity_is_the_pod_name_else_host_and_uuid_never_the_passwd_database(monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """Issue 21.1: kopf's default identity asks getpass.getuser(), which raised KeyError in the image (uid 65532 has
    no passwd entry) and crash-looped every leader."""
    import getpass
    import socket

    from im2txt_operator.cli import own_identity

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    monkeypatch.setenv("POD_NAME", "im2txt-operator-7d9f-abcde")
    assert own_identity() == "im2txt-operator-7d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    first, second = own_identity(), own_identity()
    assert first.startswith(socket.gethostname() + "_") and first != second  # a uuid each: two processes differ
