"""`python -m im2txt_storage fetch|sync` as subprocesses (as in the Job's pod), against the stand-in."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from storage_helpers import BUCKET, FAST, ROOT, storage_env, write_checkpoint

from im2txt_standins.ufile_server import Fault, UFileServer
from im2txt_storage import owners
from im2txt_storage.__main__ import build_parser
from im2txt_storage.client import Credentials, UFileClient
from im2txt_storage.paths import UFileURL
from im2txt_storage.sync import Syncer

DATA_URL = f"ufile://{BUCKET}/coco/data/"
OUTPUT_URL = f"ufile://{BUCKET}/coco/output/"


class Run:
    """A storage command as a subprocess; remembers its argv, output and /proc cmdline for secret checks."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.argv = [sys.executable, "-m", "im2txt_storage", *args]
        self.proc = subprocess.Popen(self.argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.cmdline = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        self.stderr_lines: list[str] = []
        self.stdout = ""

    def wait_for(self, needle: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            if needle in line:
                return
        raise AssertionError(f"{needle!r} not seen; stderr so far: {''.join(self.stderr_lines)}")

    def finish(self, timeout: float = 60) -> int:
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout = out
        self.stderr_lines.append(err)
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def assert_no_secret(self, creds: Credentials) -> None:
        # refresh /proc while it may still run (a later exec could change it)
        for text in (" ".join(self.argv), self.cmdline, self.stdout, self.stderr):
            assert creds.public_key not in text and creds.private_key not in text


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> Run:
    r = Run(args, env)
    r.finish(timeout)
    return r


def _fetch_args(pod: Path, *, data: bool = True) -> list[str]:
    args = ["fetch", f"--output-url={OUTPUT_URL}", f"--output-dir={pod / 'output'}", "--parallel=4"]
    if data:
        args += [f"--data-url={DATA_URL}", f"--data-dir={pod / 'data'}"]
    return args


def _sync_args(pod: Path, *extra: str) -> list[str]:
    return ["sync", f"--output-url={OUTPUT_URL}", f"--output-dir={pod / 'output'}", *extra]


def _seed_data(server: UFileServer) -> dict[str, bytes]:
    files = {f"train-{i:05d}-of-00004": os.urandom(30_000 + i) for i in range(4)}
    files |= {"val-00000-of-00001": os.urandom(5000), "inception_v3.ckpt": os.urandom(80_000),
              "word_counts.txt": b"<S> 100\n</S> 100\na 50\n"}
    for name, data in files.items():
        server.put_object(BUCKET, f"coco/data/{name}", data)
    return files


def _fake_training(output: Path, step: int, keep: list[int]) -> dict[str, bytes]:
    """Stands in for train.py: resumes from the index if there is one, then saves `step`."""
    index = output / "checkpoint"
    if index.exists():
        latest = re.search(r'model_checkpoint_path: "model.ckpt-(\d+)"', index.read_text())
        assert latest is not None and int(latest.group(1)) < step
        assert (output / f"model.ckpt-{latest.group(1)}.index").exists()
    return write_checkpoint(output, step, keep=keep)


def test_fetch_missing_env_bad_url_and_wrong_key(server: UFileServer, creds: Credentials, tmp_path: Path) -> None:
    env = storage_env(server, creds)
    del env["UFILE_PRIVATE_KEY"]
    r = run(_fetch_args(tmp_path), env)
    assert r.proc.returncode == 2 and "UFILE_PRIVATE_KEY is not set" in r.stderr
    r = run(["fetch", "--data-url=ufile://Bad_Bucket/x/", f"--data-dir={tmp_path}"], storage_env(server, creds))
    assert r.proc.returncode == 2 and "--data-url" in r.stderr and "Bad_Bucket" in r.stderr
    r = run(["fetch", f"--data-url={DATA_URL}"], storage_env(server, creds))
    assert r.proc.returncode == 2 and "--data-url and --data-dir go together" in r.stderr
    wrong = storage_env(server, creds, UFILE_PRIVATE_KEY="not-" + creds.private_key)
    r = run(_fetch_args(tmp_path), wrong)
    assert r.proc.returncode == 1
    assert f"list {DATA_URL}" in r.stderr and "HTTP 403" in r.stderr and "UFILE_PRIVATE_KEY" in r.stderr
    r.assert_no_secret(creds)
    assert "not-" + creds.private_key not in r.stderr


@pytest.mark.timeout(120)
def test_round_trip_two_pods_resume_from_the_uploaded_checkpoint(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    data = _seed_data(server)
    env = storage_env(server, creds)
    runs: list[Run] = []

    # pod 1: init container fetch, sidecar sync, "training", SIGTERM to the sidecar when training ends
    pod1 = tmp_path / "pod1"
    runs.append(run(_fetch_args(pod1), env))
    assert runs[-1].proc.returncode == 0, runs[-1].stderr
    assert {p.name: p.read_bytes() for p in (pod1 / "data").iterdir()} == data
    assert list((pod1 / "output").iterdir()) == []
    sync = Run(_sync_args(pod1, "--interval=0.3"), env)
    runs.append(sync)
    sync.wait_for("sync: watching")
    _fake_training(pod1 / "output", 10, keep=[])
    deadline = time.monotonic() + 20  # a periodic round uploads while "training" runs
    while server.get_object(BUCKET, "coco/output/checkpoint") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.get_object(BUCKET, "coco/output/model.ckpt-10.index") is not None
    assert server.get_object(BUCKET, "coco/output/checkpoint") is not None
    ckpt20 = _fake_training(pod1 / "output", 20, keep=[10])
    sync.proc.send_signal(signal.SIGTERM)
    assert sync.finish() == 0, sync.stderr
    assert "final upload" in sync.stderr
    for name, content in ckpt20.items():
        assert server.get_object(BUCKET, f"coco/output/{name}") == content, name

    # pod 2 (a retry or stage 2): fresh folders; fetch sees the latest checkpoint and resumes from it
    pod2 = tmp_path / "pod2"
    runs.append(run(_fetch_args(pod2), env))
    assert runs[-1].proc.returncode == 0, runs[-1].stderr
    assert 'model_checkpoint_path: "model.ckpt-20"' in (pod2 / "output" / "checkpoint").read_text()
    for name, content in ckpt20.items():
        assert (pod2 / "output" / name).read_bytes() == content
    puts_before = len(server.requests_matching("PUT"))
    until = tmp_path / "trainer-done"
    sync = Run(_sync_args(pod2, "--interval=30", f"--until-file={until}"), env)
    runs.append(sync)
    sync.wait_for("sync: watching")
    assert len(server.requests_matching("PUT")) == puts_before  # what fetch brought down is not re-sent
    ckpt30 = _fake_training(pod2 / "output", 30, keep=[10, 20])
    until.touch()
    assert sync.finish() == 0, sync.stderr
    assert 'model_checkpoint_path: "model.ckpt-30"' in server.get_object(BUCKET, "coco/output/checkpoint").decode()
    new_puts = {r.key for r in server.requests_matching("PUT")[puts_before:]}
    assert new_puts == {f"coco/output/{n}" for n in ckpt30}
    for r in runs:
        r.assert_no_secret(creds)


@pytest.mark.timeout(60)
def test_sigterm_uploads_checkpoint_files_before_the_index(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    sync = Run(_sync_args(tmp_path, "--interval=3600"), storage_env(server, creds))
    sync.wait_for("sync: watching")
    files = write_checkpoint(tmp_path / "output", 7, shards=3)
    (tmp_path / "output" / "events.out.tfevents.1.pod").write_bytes(b"summary")
    assert server.requests_matching("PUT") == []  # nothing before the signal: the interval is an hour
    sync.proc.send_signal(signal.SIGTERM)
    assert sync.finish() == 0, sync.stderr
    puts = [r.key.rsplit("/", 1)[1] for r in server.requests_matching("PUT") if r.status == 200]
    assert sorted(puts) == sorted([*files, "events.out.tfevents.1.pod"])
    # the newest checkpoint's files, then its index (published as early as possible), then everything else
    assert set(puts[:5]) == {n for n in files if n != "checkpoint"} and puts[5:] == [
        "checkpoint", "events.out.tfevents.1.pod"]
    assert "published checkpoint model.ckpt-7 (index uploaded)" in sync.stderr
    sync.assert_no_secret(creds)


def test_syncer_holds_an_index_that_names_an_incomplete_checkpoint(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    out = tmp_path / "output"
    client = UFileClient(creds, FAST)
    syncer = Syncer(client, UFileURL(BUCKET, "coco/output/"), out, parallel=4)
    write_checkpoint(out, 1, owner="")  # this run's (no IM2TXT_RUN_ID: the empty run id), in the ledger
    owners.record(out, "model.ckpt-9", "uid-of-another-training")  # the ledger names another run for this one
    assert "checkpoint" in syncer.run_round().uploaded
    files2 = write_checkpoint(out, 2, shards=2, keep=[1])
    missing = out / "model.ckpt-2.data-00001-of-00002"
    missing.rename(tmp_path / "aside")  # one shard still being written
    res = syncer.run_round()
    assert res.waiting == ["checkpoint"] and res.uploaded == []  # not even its .meta: all files together
    remote_index = server.get_object(BUCKET, "coco/output/checkpoint")
    assert remote_index is not None and b"model.ckpt-1" in remote_index and b"model.ckpt-2" not in remote_index
    (tmp_path / "aside").rename(missing)
    res = syncer.run_round()
    assert res.uploaded[-1] == "checkpoint"
    assert sorted(res.uploaded[:-1]) == sorted(n for n in files2 if n != "checkpoint")
    assert syncer.run_round().uploaded == []  # nothing changed
    # the Saver keeps the last N: when it drops model.ckpt-1, the new index is uploaded, then ckpt-1 pruned
    write_checkpoint(out, 3, keep=[2])
    for f in out.glob("model.ckpt-1.*"):
        f.unlink()
    server.put_object(BUCKET, "coco/output/notes.txt", b"not ours to delete")
    # Another run's bundles in the same output path, on UFile only (no local copy, no index names them): one the
    # ledger does not name, one it names for another run. Both fit "let go" by every other test, and stay.
    foreign = [f"coco/output/model.ckpt-{s}.{x}" for s in (0, 9) for x in ("index", "data-00000-of-00001")]
    for key in foreign:
        server.put_object(BUCKET, key, b"another run's")
    syncer.seed()
    res = syncer.run_round()
    assert res.uploaded[-1] == "checkpoint"
    assert sorted(res.deleted) == ["model.ckpt-1.data-00000-of-00001", "model.ckpt-1.index", "model.ckpt-1.meta"]
    assert not server.list_keys(BUCKET, "coco/output/model.ckpt-1.")
    assert server.list_keys(BUCKET, "coco/output/model.ckpt-2.") and server.get_object(
        BUCKET, "coco/output/notes.txt")
    assert all(server.get_object(BUCKET, key) == b"another run's" for key in foreign)
    deletes = [i for i, r in enumerate(server.requests_log) if r.method == "DELETE"]
    index_put = max(i for i, r in enumerate(server.requests_log) if r.method == "PUT" and r.key.endswith("/checkpoint"))
    assert deletes and min(deletes) > index_put


@pytest.mark.timeout(60)
def test_stand_in_runs_as_a_command_with_keys_from_env_and_root(
    creds: Credentials, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / BUCKET / "coco" / "data").mkdir(parents=True)
    (root / BUCKET / "coco" / "data" / "word_counts.txt").write_bytes(b"a 1\n")
    key_file = tmp_path / "private"
    key_file.write_text(creds.private_key)
    env = {**os.environ, "UFILE_PUBLIC_KEY": creds.public_key,
           "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("trainer", "standins"))}
    env.pop("UFILE_PRIVATE_KEY", None)
    argv = [sys.executable, "-m", "im2txt_standins.ufile_server", "--port=0", f"--root={root}",
            f"--private-key-file={key_file}", f"--url-file={tmp_path / 'url'}", f"--ca-file={tmp_path / 'ca.pem'}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proxy = re.search(r"HTTPS_PROXY=(\S+),", line)
        assert proxy, line
        assert (tmp_path / "url").read_text().strip() == proxy.group(1)
        env_of = {"HTTP_PROXY": proxy.group(1), "HTTPS_PROXY": proxy.group(1),
                  "REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")}
        fake = type("S", (), {"client_env": lambda self: env_of})()
        r = run(_fetch_args(tmp_path / "pod", data=True), storage_env(fake, creds))  # type: ignore[arg-type]
        assert r.proc.returncode == 0, r.stderr
        assert (tmp_path / "pod" / "data" / "word_counts.txt").read_bytes() == b"a 1\n"
        src = tmp_path / "pod" / "output" / "x.txt"
        src.write_text("up")
        client = UFileClient(creds, FAST)
        os.environ.update(env_of)
        try:
            client.upload(BUCKET, "coco/output/x.txt", src)
        finally:
            for name in env_of:
                del os.environ[name]
        assert (root / BUCKET / "coco" / "output" / "x.txt").read_text() == "up"  # persisted under --root
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert creds.private_key not in " ".join(argv) + out + err


def test_threads_are_not_left_behind() -> None:
    assert [t.name for t in threading.enumerate() if t.name.startswith("ufile")] == []


def test_fetch_fails_on_an_empty_data_path_but_not_on_an_empty_output(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    r = run(_fetch_args(tmp_path, data=False), storage_env(server, creds))
    assert r.proc.returncode == 0, r.stderr
    assert (tmp_path / "output").is_dir()
    r = run(_fetch_args(tmp_path), storage_env(server, creds))
    assert r.proc.returncode == 1 and f"no objects under the data path {DATA_URL}" in r.stderr


def test_a_checkpoint_deleted_during_a_round_is_skipped(
    server: UFileServer, creds: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "output"
    client = UFileClient(creds, FAST)
    syncer = Syncer(client, UFileURL(BUCKET, "coco/output/"), out, parallel=2)
    write_checkpoint(out, 1)
    write_checkpoint(out, 2, keep=[1])
    real_upload = client.upload

    def saver_drops_ckpt1(bucket: str, key: str, src: Path):  # the Saver deletes ckpt-1 as we go
        for f in out.glob("model.ckpt-1.*"):
            f.unlink(missing_ok=True)  # uploads run in parallel: another one may have deleted it first
        return real_upload(bucket, key, src)

    monkeypatch.setattr(client, "upload", saver_drops_ckpt1)
    res = syncer.run_round()
    assert all(not r.startswith("model.ckpt-1") for r in res.uploaded)
    assert {"model.ckpt-2.index", "checkpoint"} <= set(res.uploaded)


@pytest.mark.timeout(60)
def test_sync_exits_1_naming_the_file_when_the_final_upload_fails(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    sync = Run([*_sync_args(tmp_path, "--interval=3600"), "--attempts=2"], storage_env(server, creds))
    sync.wait_for("sync: watching")
    write_checkpoint(tmp_path / "output", 3)
    server.add_fault(Fault("status", method="PUT", key="coco/output/model.ckpt-3.index", count=-1, status=503))
    sync.proc.send_signal(signal.SIGTERM)
    assert sync.finish() == 1
    assert "failed: final upload failed" in sync.stderr
    assert "upload" in sync.stderr and "ufile://im2txt-test/coco/output/model.ckpt-3.index" in sync.stderr
    assert "the bucket has no index ufile://im2txt-test/coco/output/checkpoint (the trainer's newest is " \
        "model.ckpt-3)" in sync.stderr
    assert server.get_object(BUCKET, "coco/output/checkpoint") is None  # never an index without its files
    sync.assert_no_secret(creds)


@pytest.mark.parametrize("argv", [
    ["sync", f"--output-url={OUTPUT_URL}", "--output-dir=/data/output", "--interv=1"],  # a sync flag
    ["sync", f"--output-url={OUTPUT_URL}", "--output-d=/elsewhere", "--output-dir=/data/output"],
    ["fetch", f"--output-url={OUTPUT_URL}", "--output-dir=/data/output", "--paral=2"],  # from the parent parser
    ["fetch", "--data-u=ufile://other/x/", "--data-dir=/data/data"],
])
def test_abbreviated_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_full_flag_names_parse() -> None:
    a = build_parser().parse_args(["sync", f"--output-url={OUTPUT_URL}", "--output-dir", "/data/output",
                                   "--interval=5", "--parallel=2", "--no-prune"])
    assert (a.command, a.output_url, a.output_dir, a.interval, a.parallel, a.prune) == (
        "sync", OUTPUT_URL, Path("/data/output"), 5.0, 2, False)


@pytest.mark.parametrize(("index", "uploads"), [("1", False), ("0", True)])
def test_sync_chief_only_uploads_from_completion_index_0_alone(
    server: UFileServer, creds: Credentials, tmp_path: Path, index: str, uploads: bool
) -> None:
    """A multi-node stage (an Indexed Job): only the chief's checkpoints are the model's."""
    env = {**storage_env(server, creds), "JOB_COMPLETION_INDEX": index}
    pod = tmp_path / "pod"
    _fake_training(pod / "output", 10, keep=[])
    sync = Run(_sync_args(pod, "--interval=0.3", "--chief-only"), env)
    sync.wait_for("not the chief" if not uploads else "sync: watching")
    time.sleep(1)  # several intervals
    sync.proc.send_signal(signal.SIGTERM)
    assert sync.finish() == 0, sync.stderr
    assert (server.get_object(BUCKET, "coco/output/model.ckpt-10.index") is not None) is uploads
    assert (server.get_object(BUCKET, "coco/output/checkpoint") is not None) is uploads


def test_syncer_knows_which_checkpoint_the_bucket_index_names_at_start(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    """A restarted sidecar (or a trainer that saved before sync started) must still say what the bucket holds."""
    url = UFileURL(BUCKET, "coco/output/")
    for name, data in write_checkpoint(tmp_path / "bucket", 100).items():
        server.put_object(BUCKET, url.key(name), data)
    out = tmp_path / "output"
    write_checkpoint(out, 200)  # the local index differs from the bucket's
    syncer = Syncer(UFileClient(creds, FAST), url, out, parallel=2)
    syncer.seed()
    assert syncer.published_checkpoint() == "model.ckpt-100"
    assert "model.ckpt-200" in syncer.run_round().published
    assert syncer.published_checkpoint() == "model.ckpt-200"
    fresh = Syncer(UFileClient(creds, FAST), url, out, parallel=2)
    fresh.seed()  # now from the identical local copy
    assert fresh.published_checkpoint() == "model.ckpt-200" and list(out.glob(".*")) == []


@pytest.mark.timeout(60)
def test_failed_deletes_never_fail_a_good_final_upload(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    for name, data in write_checkpoint(tmp_path / "old", 1).items():  # stale: the trainer has let it go
        if name != "checkpoint":
            server.put_object(BUCKET, f"coco/output/{name}", data)
    owners.record(tmp_path / "output", "model.ckpt-1", "")  # this run's (the trainer's ledger came with the output)
    server.add_fault(Fault("status", method="DELETE", count=-1, status=503))
    sync = Run(_sync_args(tmp_path, "--interval=3600", "--final-deadline-seconds=20"), storage_env(server, creds))
    sync.wait_for("sync: watching")
    files = write_checkpoint(tmp_path / "output", 2)
    started = time.monotonic()
    sync.proc.send_signal(signal.SIGTERM)
    assert sync.finish() == 0, sync.stderr
    assert time.monotonic() - started < 10  # one try per delete: pruning does not eat the deadline
    assert "could not delete an old checkpoint file" in sync.stderr
    assert len(server.requests_matching("DELETE")) == 3  # the 3 stale files, once each
    for name, content in files.items():
        assert server.get_object(BUCKET, f"coco/output/{name}") == content
    assert server.list_keys(BUCKET, "coco/output/model.ckpt-1.")  # still there: nothing lost, nothing failed


def test_sync_final_deadline_flag_defaults_to_fit_a_300s_grace_period() -> None:
    a = build_parser().parse_args(["sync", f"--output-url={OUTPUT_URL}", "--output-dir=/data/output"])
    assert a.final_deadline_seconds == 240.0
    a = build_parser().parse_args(["sync", f"--output-url={OUTPUT_URL}", "--output-dir=/data/output",
                                   "--final-deadline-seconds=90"])
    assert a.final_deadline_seconds == 90.0
