"""Pure decisions: URL parsing, key -> path safety, the sync plan, the stand-in's ETag and range maths."""

from __future__ import annotations

import os

import pytest
from ufile.baseufile import BaseUFile
from ufile.util import file_etag

from im2txt_standins.ufile_server import _parse_range, sign, string_to_sign, ufile_etag
from im2txt_storage.client import redact, register_secret
from im2txt_storage.local import bytes_etag
from im2txt_storage.paths import UFileURL, parse_ufile_url
from im2txt_storage.sync import (
    complete_and_up,
    is_complete,
    is_ignored,
    parse_index,
    plan_round,
    publishable_index,
    stale_checkpoint_files,
    step_of,
)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("ufile://my-bucket/coco/data/", "my-bucket", "coco/data/"),
        ("ufile://my-bucket/", "my-bucket", ""),
        ("ufile://my-bucket/.cache/v1.2/", "my-bucket", ".cache/v1.2/"),
    ],
)
def test_parse_ufile_url(url: str, bucket: str, prefix: str) -> None:
    parsed = parse_ufile_url(url)
    assert parsed == UFileURL(bucket, prefix) and str(parsed) == url
    assert parsed.key("model.ckpt-1.index") == prefix + "model.ckpt-1.index"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("s3://b/x/", "is not a UFile URL"),
        ("pvc://claim/x/", "is not a UFile URL"),
        ("ufile://B_ad/x/", "bucket name is 3-63 lowercase letters"),
        ("ufile://ok-bucket/a/../b/", "'..'"),
        ("ufile://ok-bucket/./", "'.'"),
        ("ufile://ok-bucket/a//b/", "empty"),
        # The operator passes the spec's path, which always ends with '/': the commands take exactly that form.
        ("ufile://ok-bucket/coco/data", "must end with '/'"),
        ("ufile://ok-bucket", "must end with '/'"),
        ("ufile://ok-bucket/50%/", "'%', '?' or '#'"),
        ("ufile://ok-bucket/a b/", "spaces"),
    ],
)
def test_parse_ufile_url_errors_name_the_field(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match="--data-url") as err:
        parse_ufile_url(url, field="--data-url")
    assert needle in str(err.value)


def test_relpath_rejects_unsafe_keys() -> None:
    url = UFileURL("b", "out/")
    assert url.relpath("out/model.ckpt-1.index") == "model.ckpt-1.index"
    assert url.relpath("out/sub/x") == "sub/x"
    assert url.relpath("out/a b+c é=(1)") == "a b+c é=(1)"
    for key in ("out/", "out/dir/", "out/../etc/passwd", "out/a/./b", "other/x", "out//x", "out/a%20b",
                "out/a?b", "out/a#b", "out/a\nb"):
        assert url.relpath(key) is None, key


@pytest.mark.parametrize("size", [0, 1, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 9 * 1024 * 1024])
def test_etag_matches_the_sdk(tmp_path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert ufile_etag(data) == file_etag(str(path)) == bytes_etag(data)


def test_stand_in_signs_like_the_sdk() -> None:
    sdk = BaseUFile("pub", "secret")
    header = {"Content-Type": "text/plain", "Content-MD5": "abc"}
    expected = sdk.authorization("put", "bkt", "a/b.txt", dict(header))
    text = string_to_sign("PUT", "bkt", "a/b.txt", header, date_or_expires="")
    assert expected == f"UCloud pub:{sign('secret', text)}"
    listing = {"delimiter": "/", "marker": "", "max-keys": "10", "prefix": "p/"}
    expected = sdk.authorization("get", "bkt", "", {}, "", "listobjects", listing)
    text = string_to_sign("GET", "bkt", "", {}, date_or_expires="", content_type="", list_params=listing)
    assert expected == f"UCloud pub:{sign('secret', text)}"


def test_range_parsing() -> None:
    assert _parse_range("bytes=0-9", 100) == (0, 9)
    assert _parse_range("bytes=90-", 100) == (90, 99)
    assert _parse_range("bytes=-10", 100) == (90, 99)
    assert _parse_range("bytes=95-200", 100) == (95, 99)
    assert _parse_range("bytes=100-", 100) is None
    assert _parse_range("items=0-1", 100) is None


def test_redact_removes_keys_and_signatures() -> None:
    register_secret("SECRETVALUE123")
    text = ('{"Authorization": "UCloud PUB123:abc+/=="} http://b/k?UCloudPublicKey=PUB123&Expires=1&Signature=xx '
            "SECRETVALUE123")
    out = redact(text)
    assert "PUB123" not in out and "abc+/==" not in out and "SECRETVALUE123" not in out and "xx" not in out


# -- the sync plan -----------------------------------------------------------------------------------------
def _stamps(*names: str) -> dict[str, tuple[int, int]]:
    return {n: (10, 1) for n in names}


def test_complete_needs_index_and_every_shard() -> None:
    assert is_complete("m-5", {"m-5.index", "m-5.data-00000-of-00001"})
    assert not is_complete("m-5", {"m-5.data-00000-of-00001", "m-5.meta"})
    assert not is_complete("m-5", {"m-5.index", "m-5.data-00000-of-00002"})
    assert is_complete("m-5", {"m-5.index", "m-5.data-00000-of-00002", "m-5.data-00001-of-00002"})


def test_ignored_files() -> None:
    for rel in (".checkpoint.tmp", ".tmp-model.ckpt-5-99.index", "checkpoint.tmp1234", "x_temp/part-0",
                "model.ckpt-5.index.tempstate123", ".model.ckpt-5.index.im2txt-part", "sub/.hidden", "100%.txt"):
        assert is_ignored(rel), rel
    for rel in ("checkpoint", "model.ckpt-5.index", "events.out.tfevents.1.host", "eval/checkpoint"):
        assert not is_ignored(rel), rel


def test_parse_index_relative_and_absolute() -> None:
    text = 'model_checkpoint_path: "/data/output/model.ckpt-9"\nall_model_checkpoint_paths: "model.ckpt-4"\n'
    assert parse_index(text, "checkpoint") == ("model.ckpt-9", ["model.ckpt-9", "model.ckpt-4"])
    assert parse_index('model_checkpoint_path: "m-1"\n', "eval/checkpoint") == ("eval/m-1", ["eval/m-1"])


def test_plan_holds_incomplete_checkpoints_and_defers_the_index() -> None:
    local = _stamps("events.out", "model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001",
                    "model.ckpt-2.data-00000-of-00001", "checkpoint", ".checkpoint.tmp")
    plan = plan_round(local, {})
    assert plan.newest == [] and plan.older == []
    assert plan.rest == ["events.out", "model.ckpt-1.data-00000-of-00001", "model.ckpt-1.index"]
    assert plan.indexes == ["checkpoint"]
    # unchanged files are not planned again
    assert plan_round(local, {r: local[r] for r in plan.rest}).rest == []


def test_plan_puts_the_newest_checkpoint_first_and_older_ones_newest_first() -> None:
    names = [f"model.ckpt-{s}.{x}" for s in (100, 200, 300, 400) for x in ("index", "data-00000-of-00001")]
    local = _stamps("events.out", "graph.pbtxt", "checkpoint", "model.ckpt-500.index",
                    "model.ckpt-500.data-00000-of-00001", *names)
    plan = plan_round(local, {}, targets=["model.ckpt-400"])
    assert plan.newest == ["model.ckpt-400.data-00000-of-00001", "model.ckpt-400.index"]
    assert [step_of(r.split(".")[1]) for r in plan.older] == [300, 300, 200, 200, 100, 100]
    # a newer complete checkpoint the index does not name yet is not "older": it goes with the plain files
    assert plan.rest == ["events.out", "graph.pbtxt", "model.ckpt-500.data-00000-of-00001", "model.ckpt-500.index"]


def test_complete_and_up() -> None:
    local = _stamps("m-1.index", "m-1.data-00000-of-00001", "m-2.index", "m-2.data-00000-of-00001",
                    "m-3.data-00000-of-00001")
    up, not_up = complete_and_up(local, {r: local[r] for r in local if not r.startswith("m-2.index")})
    assert (up, not_up) == ({"m-1"}, {"m-2", "m-3"})
    changed = {r: (10, 2) for r in local}  # uploaded, but the local file changed since
    assert complete_and_up(local, changed) == (set(), {"m-1", "m-2", "m-3"})


INDEX_5 = ('model_checkpoint_path: "model.ckpt-5"\n'
           + "".join(f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in (1, 2, 3, 4, 5)))


def test_publishable_index_is_the_exact_text_when_everything_it_names_is_up() -> None:
    up = {f"model.ckpt-{s}" for s in (1, 2, 3, 4, 5)}
    assert publishable_index("checkpoint", INDEX_5, up) == ("model.ckpt-5", INDEX_5)


def test_publishable_index_leaves_out_what_is_not_up() -> None:
    # the newest is up, two older ones are not (they will be pruned soon anyway): publish the newest now
    choice = publishable_index("checkpoint", INDEX_5, {"model.ckpt-5", "model.ckpt-3", "model.ckpt-1"})
    assert choice == ("model.ckpt-5", 'model_checkpoint_path: "model.ckpt-5"\nall_model_checkpoint_paths: '
                      '"model.ckpt-1"\nall_model_checkpoint_paths: "model.ckpt-3"\n'
                      'all_model_checkpoint_paths: "model.ckpt-5"\n')
    # the newest is not up yet: the newest that is stands in
    prefix, text = publishable_index("checkpoint", INDEX_5, {"model.ckpt-2", "model.ckpt-4"}) or ("", "")
    assert prefix == "model.ckpt-4"
    assert parse_index(text, "checkpoint") == ("model.ckpt-4", ["model.ckpt-4", "model.ckpt-2", "model.ckpt-4"])
    assert publishable_index("checkpoint", INDEX_5, set()) is None
    assert publishable_index("checkpoint", "garbage\n", {"model.ckpt-5"}) is None


def test_publishable_index_keeps_timestamps_with_their_paths_and_absolute_paths() -> None:
    text = ('model_checkpoint_path: "/data/output/model.ckpt-3"\n'
            'all_model_checkpoint_paths: "/data/output/model.ckpt-1"\n'
            'all_model_checkpoint_paths: "/data/output/model.ckpt-2"\n'
            'all_model_checkpoint_paths: "/data/output/model.ckpt-3"\n'
            "all_model_checkpoint_timestamps: 11.5\nall_model_checkpoint_timestamps: 12.5\n"
            "all_model_checkpoint_timestamps: 13.5\nlast_preserved_timestamp: 10.0\n")
    prefix, out = publishable_index("checkpoint", text, {"model.ckpt-1", "model.ckpt-3"}) or ("", "")
    assert prefix == "model.ckpt-3"
    assert out == ('model_checkpoint_path: "/data/output/model.ckpt-3"\n'
                   'all_model_checkpoint_paths: "/data/output/model.ckpt-1"\n'
                   'all_model_checkpoint_paths: "/data/output/model.ckpt-3"\n'
                   "all_model_checkpoint_timestamps: 11.5\nall_model_checkpoint_timestamps: 13.5\n"
                   "last_preserved_timestamp: 10.0\n")
    assert publishable_index("eval/checkpoint", 'model_checkpoint_path: "m-1"\n', {"eval/m-1"}) == (
        "eval/m-1", 'model_checkpoint_path: "m-1"\n')


def test_prune_only_checkpoints_the_trainer_let_go() -> None:
    remote = ["model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001", "model.ckpt-2.index", "notes.txt",
              "old/model.ckpt-0.index", "model.ckpt-3.index", "checkpoint"]
    local = ["model.ckpt-2.index", "model.ckpt-3.index", "checkpoint"]
    text = 'model_checkpoint_path: "model.ckpt-3"\nall_model_checkpoint_paths: "model.ckpt-2"\n'
    assert stale_checkpoint_files(remote, local, "checkpoint", text) == [
        "model.ckpt-1.data-00000-of-00001", "model.ckpt-1.index"]
    # a checkpoint still on local disk is kept even when the index dropped it
    assert stale_checkpoint_files(remote, [*local, "model.ckpt-1.index"], "checkpoint", text) == [
        "model.ckpt-1.data-00000-of-00001"]
