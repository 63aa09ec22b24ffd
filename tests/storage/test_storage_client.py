"""The SDK wrapper against the UFile stand-in over real HTTP (the real `ufile` SDK through HTTP_PROXY)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest
from storage_helpers import BUCKET, FAST
from ufile.util import file_etag

from im2txt_standins.ufile_server import Fault, UFileServer
from im2txt_storage.client import (
    AuthError,
    ClientSettings,
    ConfigError,
    Credentials,
    RemoteObject,
    StorageError,
    TransientError,
    UFileClient,
)
from im2txt_storage.paths import UFileURL
from im2txt_storage.transfer import download_tree, upload_files


def _remote(server: UFileServer, key: str, data: bytes) -> RemoteObject:
    return RemoteObject(key, len(data), server.put_object(BUCKET, key, data))


def _no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if "im2txt-part" in p.name]
    assert leftovers == []


def test_wrong_private_key_is_a_clear_error_without_secrets(server: UFileServer, creds: Credentials) -> None:
    bad = Credentials(creds.public_key, "WRONG" + creds.private_key)
    client = UFileClient(bad, FAST)
    with pytest.raises(AuthError) as err:
        client.list(UFileURL(BUCKET, "data/"))
    msg = str(err.value)
    assert "HTTP 403" in msg and "signature not match" in msg and "UFILE_PRIVATE_KEY" in msg
    assert "ufile://im2txt-test/data/" in msg
    assert creds.public_key not in msg and creds.private_key not in msg and bad.private_key not in msg
    assert len(server.requests_log) == 1  # a 403 is not retried
    assert server.requests_log[0].host == f"{BUCKET}.cn-bj.ufileos.com"  # proxy-style, the SDK's own URL


def test_unknown_public_key_and_missing_env(server: UFileServer, creds: Credentials) -> None:
    client = UFileClient(Credentials("NOSUCHPUB", creds.private_key), FAST)
    with pytest.raises(AuthError, match=r"HTTP 403\); check that UFILE_PUBLIC_KEY"):
        client.head(BUCKET, "x")  # HEAD answers carry no body: the error comes from the status alone
    with pytest.raises(ConfigError, match="UFILE_PRIVATE_KEY"):
        Credentials.from_env({"UFILE_PUBLIC_KEY": "x"})
    with pytest.raises(ConfigError, match="UFILE_UPLOAD_SUFFIX"):
        ClientSettings.from_env({"UFILE_UPLOAD_SUFFIX": "cn-bj/evil"})


def test_listing_follows_markers_over_pages(server: UFileServer, creds: Credentials) -> None:
    for i in range(45):
        server.put_object(BUCKET, f"data/train-{i:05d}-of-00045", b"x" * i)
    server.put_object(BUCKET, "datax/other", b"not under the prefix")
    client = UFileClient(creds, dataclasses.replace(FAST, list_limit=10))
    objects = client.list(UFileURL(BUCKET, "data/"))
    assert [o.key for o in objects] == [f"data/train-{i:05d}-of-00045" for i in range(45)]
    assert [o.size for o in objects] == list(range(45))
    lists = server.requests_matching("GET", "")
    assert len(lists) == 5
    assert [r.query.get("marker", [""])[0] for r in lists] == [
        "", *(f"data/train-{i:05d}-of-00045" for i in (9, 19, 29, 39))
    ]


def test_multipart_upload_round_trip(server: UFileServer, client: UFileClient, tmp_path: Path) -> None:
    src = tmp_path / "inception_v3.ckpt"
    src.write_bytes(os.urandom(9 * 1024 * 1024 + 123))  # 3 parts of 4 MiB
    server.add_fault(Fault("status", method="PUT", query="partNumber", count=1, status=500))
    obj = client.upload(BUCKET, "data/inception_v3.ckpt", src)
    assert obj.etag == file_etag(str(src))
    assert server.get_object(BUCKET, "data/inception_v3.ckpt") == src.read_bytes()
    assert len(server.requests_matching("POST", "data/inception_v3.ckpt")) == 2  # initiate + finish
    assert server.service.pending_uploads() == 0
    back = tmp_path / "back" / "inception_v3.ckpt"
    client.download(BUCKET, obj, back)
    assert back.read_bytes() == src.read_bytes()


def test_failed_multipart_is_aborted(server: UFileServer, client: UFileClient, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(6 * 1024 * 1024))
    server.add_fault(Fault("status", method="PUT", query="partNumber", count=-1, status=500))
    with pytest.raises(TransientError, match=r"upload .*big -> ufile://im2txt-test/out/big"):
        client.upload(BUCKET, "out/big", src)
    assert server.get_object(BUCKET, "out/big") is None
    assert server.service.pending_uploads() == 0  # every initiated upload was aborted


def test_multipart_abort_is_retried_and_a_failed_one_is_logged(
    server: UFileServer, client: UFileClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(6 * 1024 * 1024))
    server.add_fault(Fault("status", method="PUT", query="partNumber", count=-1, status=500))
    server.add_fault(Fault("status", method="DELETE", query="uploadId", count=2, status=503))
    with pytest.raises(TransientError):
        client.upload(BUCKET, "out/big", src)
    assert server.service.pending_uploads() == 0  # aborted on the 3rd try
    server.add_fault(Fault("status", method="DELETE", query="uploadId", count=-1, status=503))
    with caplog.at_level(logging.WARNING, logger="im2txt_storage"), pytest.raises(TransientError, match="upload"):
        client.upload(BUCKET, "out/big", src)
    assert server.service.pending_uploads() == FAST.attempts  # one multipart upload per attempt, none aborted
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == FAST.attempts and all(
        w.startswith("abort multipart upload ") and "ufile://im2txt-test/out/big failed; its parts stay" in w
        and "HTTP 503" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", method="GET", status=503, count=2),
        Fault("status", method="GET", status=500, count=1),
        Fault("reset", method="GET", count=2),
        Fault("slow", method="GET", delay=2.5, count=1),  # longer than the 1 s read timeout
        Fault("truncate", method="GET", count=2),
    ],
    ids=lambda f: f"{f.kind}-{f.status if f.kind == 'status' else f.count}",
)
def test_download_survives_faults(server: UFileServer, client: UFileClient, tmp_path: Path, fault: Fault) -> None:
    # The SDK writes 4 MiB blocks: a body cut after the first block leaves something to resume from.
    data = os.urandom((9 if fault.kind == "truncate" else 3) * 1024 * 1024 + 7)
    obj = _remote(server, "data/train-00000-of-00256", data)
    server.add_fault(fault)
    dest = tmp_path / "data" / "train-00000-of-00256"
    client.download(BUCKET, obj, dest)
    assert dest.read_bytes() == data
    assert fault.count == 0 and fault.hits >= 1  # every injected fault was met and survived
    _no_partial_files(tmp_path)
    if fault.kind == "truncate":  # the rest came with a Range request, not the whole file again
        gets = server.requests_matching("GET", obj.key)
        assert any("Range" in r.headers for r in gets)


@pytest.mark.parametrize("kind", ["status", "reset", "slow", "truncate"])
def test_upload_survives_faults(server: UFileServer, client: UFileClient, tmp_path: Path, kind: str) -> None:
    src = tmp_path / "model.ckpt-5.data-00000-of-00001"
    src.write_bytes(os.urandom(200_000))
    fault = server.add_fault(Fault(kind, method="PUT", delay=2.5, count=2 if kind != "slow" else 1))
    obj = client.upload(BUCKET, "out/model.ckpt-5.data-00000-of-00001", src)
    assert fault.count == 0 and fault.hits >= 1
    assert server.get_object(BUCKET, obj.key) == src.read_bytes()
    assert obj.etag == file_etag(str(src))


def test_persistent_fault_fails_naming_the_object_and_leaves_nothing(
    server: UFileServer, client: UFileClient, tmp_path: Path
) -> None:
    obj = _remote(server, "data/val-00000-of-00004", os.urandom(50_000))
    server.add_fault(Fault("truncate", method="GET", count=-1))
    dest = tmp_path / "val-00000-of-00004"
    with pytest.raises(StorageError, match=r"ufile://im2txt-test/data/val-00000-of-00004"):
        client.download(BUCKET, obj, dest)
    assert not dest.exists()
    _no_partial_files(tmp_path)
    assert len(server.requests_matching("GET", obj.key)) == FAST.attempts


def test_corrupt_download_is_never_renamed_into_place(
    server: UFileServer, client: UFileClient, tmp_path: Path
) -> None:
    obj = _remote(server, "data/word_counts.txt", b"a 10\nb 5\n")
    dest = tmp_path / "word_counts.txt"
    dest.write_bytes(b"old complete file\n")
    lie = RemoteObject(obj.key, obj.size, "AQAAAwrongetag")  # e.g. the object changed after the listing
    with pytest.raises(StorageError, match="does not match"):
        client.download(BUCKET, lie, dest)
    assert dest.read_bytes() == b"old complete file\n"
    _no_partial_files(tmp_path)


def test_download_tree_skips_unchanged(server: UFileServer, client: UFileClient, tmp_path: Path) -> None:
    for i in range(6):
        server.put_object(BUCKET, f"data/f{i}", os.urandom(1000 + i))
    server.put_object(BUCKET, "data/sub/", b"")  # a console-made folder placeholder
    url = UFileURL(BUCKET, "data/")
    stats = download_tree(client, url, tmp_path, parallel=4)
    assert sorted(stats.transferred) == [f"data/f{i}" for i in range(6)]
    assert not (tmp_path / "sub").exists() or (tmp_path / "sub").is_dir()
    gets = len(server.requests_matching("GET", "data/f*"))
    stats = download_tree(client, url, tmp_path, parallel=4)
    assert stats.transferred == [] and len(stats.skipped) == 6
    assert len(server.requests_matching("GET", "data/f*")) == gets
    server.put_object(BUCKET, "data/f3", b"changed, same size?")
    (tmp_path / "f4").write_bytes(b"x" * 1004)  # same size, different content: the ETag tells
    stats = download_tree(client, url, tmp_path, parallel=4)
    assert sorted(stats.transferred) == ["data/f3", "data/f4"]
    for i in range(6):
        assert (tmp_path / f"f{i}").read_bytes() == server.get_object(BUCKET, f"data/f{i}")


def test_sdk_logs_never_show_secrets(
    server: UFileServer, creds: Credentials, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger("im2txt_storage.sdk").setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            client = UFileClient(creds, FAST)
            src = tmp_path / "a.txt"
            src.write_text("hello")
            obj = client.upload(BUCKET, "out/a.txt", src)
            client.download(BUCKET, obj, tmp_path / "b.txt")
            client.list(UFileURL(BUCKET, "out/"))
            server.add_fault(Fault("reset", method="GET", count=1))
            client.download(BUCKET, obj, tmp_path / "c.txt")
    finally:
        logging.getLogger("im2txt_storage.sdk").setLevel(logging.NOTSET)
    sdk_lines = [r.getMessage() for r in caplog.records if r.name == "im2txt_storage.sdk"]
    assert any("UCloud <redacted>" in line for line in sdk_lines)  # the SDK's header dump, forwarded
    out, err = capfd.readouterr()
    everything = "\n".join([*(r.getMessage() for r in caplog.records), out, err])
    assert creds.public_key not in everything and creds.private_key not in everything
    assert "Authorization" not in err  # the SDK's own stderr handler is gone


def test_tree_transfers_under_mixed_faults_lose_nothing(
    server: UFileServer, client: UFileClient, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {f"train-{i:05d}-of-00040": os.urandom(20_000 + 97 * i) for i in range(40)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    for kind in ("status", "reset", "truncate", "slow"):
        server.add_fault(Fault(kind, method="PUT", key="data/train-*", count=3, delay=1.5))
    done = upload_files(client, UFileURL(BUCKET, "data/"), src, sorted(files), parallel=8)
    assert {obj.key: obj.etag for obj in done.values()} == {
        f"data/{n}": file_etag(str(src / n)) for n in files}
    for kind in ("status", "reset", "truncate", "slow"):
        server.add_fault(Fault(kind, method="GET", key="data/train-*", count=3, delay=1.5))
    dest = tmp_path / "dest"
    stats = download_tree(client, UFileURL(BUCKET, "data/"), dest, parallel=8)
    assert len(stats.transferred) == 40
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == files  # nothing else: no partial files
    assert all(f.count == 0 for f in server.faults)  # every fault was hit and survived


def test_stand_in_speaks_form_upload_and_listobjects(server: UFileServer, client: UFileClient,
                                                    tmp_path: Path) -> None:
    src = tmp_path / "word_counts.txt"
    src.write_bytes(b"a 3\nb 2\n")
    fm = client._fm
    _, info = fm.postfile(BUCKET, "data/word_counts.txt", str(src))
    assert info.ok() and server.get_object(BUCKET, "data/word_counts.txt") == src.read_bytes()
    server.put_object(BUCKET, "data/sub/x", b"1")
    ret, info = fm.listobjects(BUCKET, prefix="data/", marker="", maxkeys=10, delimiter="/")
    assert info.ok()
    assert [c["Key"] for c in ret["Contents"]] == ["data/word_counts.txt"]
    assert ret["CommonPrefixes"] == [{"Prefix": "data/sub/"}]
    _, info = fm.deletefile(BUCKET, "data/word_counts.txt")
    assert info.status_code == 204 and server.get_object(BUCKET, "data/word_counts.txt") is None


def test_keys_with_spaces_and_unicode_round_trip(server: UFileServer, client: UFileClient, tmp_path: Path) -> None:
    src = tmp_path / "a b+c é=(1).txt"
    src.write_text("caption")
    obj = client.upload(BUCKET, f"out/{src.name}", src)
    assert server.list_keys(BUCKET, "out/") == [f"out/{src.name}"]
    client.download(BUCKET, obj, tmp_path / "back" / src.name)
    assert (tmp_path / "back" / src.name).read_text() == "caption"
