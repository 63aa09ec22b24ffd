"""paths: one parser of ufile:// and pvc:// paths, shared by the operator, the CRD and the storage commands."""

from __future__ import annotations

from typing import Any

import pytest
from crd_validate import validate

from im2txt_operator import paths as operator_paths
from im2txt_operator.spec import SpecError, parse_spec
from im2txt_storage.paths import PvcPath, UFilePath, parse_path, parse_ufile_url


@pytest.mark.parametrize(("path", "parsed"), [
    ("ufile://bucket/", UFilePath("bucket", "")),
    ("ufile://my-bucket/a/b/", UFilePath("my-bucket", "a/b/")),
    ("pvc://claim", PvcPath("claim", "")),
    ("pvc://claim/", PvcPath("claim", "")),
    ("pvc://claim/sub/path/", PvcPath("claim", "sub/path")),
])
def test_paths(path: str, parsed: object) -> None:
    assert parse_path(path) == parsed


# -- one parser for storage paths: the operator and the storage commands agree --------------------------------
PATHS: list[tuple[str, bool]] = [
    ("ufile://bucket/", True),
    ("ufile://my-bucket/uai/im2txt/data/", True),
    ("ufile://bucket/.hidden/..x/.../", True),
    ("ufile://bucket/a b/", False),
    ("ufile://bucket/../x/", False),
    ("ufile://bucket/a/../", False),
    ("ufile://bucket/./", False),
    ("ufile://bucket//", False),
    ("ufile://bucket/a//b/", False),
    ("ufile://bucket/x", False),
    ("ufile://bucket", False),
    ("ufile://bucket/50%/", False),
    ("ufile://bucket/a?b/", False),
    ("ufile://bucket/a#b/", False),
    ("ufile://bucket/a\\b/", False),
    ("ufile://bucket/a\tb/", False),
    ("ufile://bucket/x/\n", False),
    ("ufile://my.bucket/x/", False),
    ("ufile://ab/x/", False),
    ("ufile://Bucket/x/", False),
    ("ufile://-bucket/x/", False),
    ("ufile://" + "b" * 63 + "/x/", True),
    ("ufile://" + "b" * 64 + "/x/", False),
    ("pvc://claim", True),
    ("pvc://claim/", True),
    ("pvc://claim/sub/path", True),
    ("pvc://claim/sub/path/", True),
    ("pvc://claim/50%/a?b#c", True),
    ("pvc://claim/../../etc/", False),
    ("pvc://claim/a/..", False),
    ("pvc://claim/./a", False),
    ("pvc://claim//a", False),
    ("pvc://claim/a//", False),
    ("pvc://Claim/a", False),
    ("pvc://claim/a b", False),
    ("s3://bucket/x/", False),
    ("/data/x", False),
    ("", False),
]


@pytest.mark.parametrize(("path", "ok"), PATHS, ids=[repr(p[0])[1:-1][:40] for p in PATHS])
def test_operator_and_storage_commands_agree_on_paths(crd: dict[str, Any], path: str, ok: bool) -> None:
    spec = {"dataPath": path, "outputPath": "pvc://out/", "credentialsSecret": "keys"}
    try:
        parse_spec(spec)
        operator_ok = True
    except SpecError as e:
        assert e.field == "spec.dataPath", e
        operator_ok = False
    assert operator_ok is ok
    obj = {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "metadata": {"name": "t"}, "spec": spec}
    assert (validate(crd, obj) == []) is ok, validate(crd, obj)
    if path.startswith("ufile://"):  # what `python -m im2txt_storage fetch|sync --...-url=` parses
        try:
            parse_ufile_url(path, field="--data-url")
            storage_ok = True
        except ValueError as e:
            assert str(e).startswith("--data-url: "), e
            storage_ok = False
        assert storage_ok is ok


def test_the_operator_uses_the_storage_packages_parser() -> None:
    assert operator_paths.parse_path is parse_path and operator_paths.UFilePath is UFilePath
    assert operator_paths.PvcPath is PvcPath
