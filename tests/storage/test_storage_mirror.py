"""`python -m im2txt_storage mirror`: the read-only copy of a training's TensorBoard event files that a
TensorBoard pod serves (issue 11), against the UFile stand-in with the real SDK, and read by a real TensorBoard."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import BUCKET, FAST, storage_env, write_checkpoint
from test_storage_cli import Run, run

from im2txt_standins.ufile_server import Fault, UFileServer
from im2txt_storage.__main__ import MIRROR_STOP_GRACE, build_parser
from im2txt_storage.client import Credentials, UFileClient
from im2txt_storage.mirror import (
    DEFAULT_INCLUDE,
    Mirror,
    ReadOnlyUFile,
    by_folder,
    part_name,
    plan_pass,
    wanted,
)
from im2txt_storage.paths import UFileURL
from im2txt_storage.sync import Syncer
from im2txt_storage.transfer import PART_SUFFIX

PREFIX = "coco/output/"
OUTPUT_URL = f"ufile://{BUCKET}/{PREFIX}"
EV_ROOT = "events.out.tfevents.1700000000.pod-a.1.0.v2"  # the trainer writes straight into train_dir
EV_TRAIN = "train/events.out.tfevents.1700000001.pod-a.1.0.v2"
EV_EVAL = "eval/events.out.tfevents.1700000002.pod-a.1.0.v2"
# The TensorBoard container's flags besides --logdir/--host/--port (docs/storage.md): the mirror replaces a grown
# event file by a rename, which TensorBoard only notices with --detect_file_replacement=true.
TB_FLAGS = ["--detect_file_replacement=true", "--load_fast=false"]
READ_ONLY = {"GET", "HEAD"}


def _mirror_args(dest: Path, *extra: str) -> list[str]:
    return ["mirror", f"--output-url={OUTPUT_URL}", f"--output-dir={dest}", *extra]


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _methods(server: UFileServer, since: int = 0) -> set[str]:
    return {r.method for r in server.requests_log[since:]}


def _object_gets(server: UFileServer, since: int = 0) -> list[str]:
    return [r.key for r in server.requests_log[since:] if r.method == "GET" and "list" not in r.query]


def _wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


# -- pure decisions ----------------------------------------------------------------------------------
def test_wanted_matches_the_file_name_and_never_a_hidden_or_temporary_file() -> None:
    assert wanted(EV_ROOT, DEFAULT_INCLUDE) and wanted(EV_TRAIN, DEFAULT_INCLUDE)
    assert wanted("a/b/events.out.tfevents.1.host.profile-empty", DEFAULT_INCLUDE)
    for rel in ("checkpoint", "model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001", "train/graph.pbtxt",
                "tfevents/notes.txt",  # the glob is on the file name, not the folder
                f".{EV_ROOT}{PART_SUFFIX}", f"train/.{EV_ROOT}", f".hidden/{EV_ROOT}"):
        assert not wanted(rel, DEFAULT_INCLUDE), rel
    assert wanted("model.ckpt-5.index", ["*.index", "*tfevents*"]) and not wanted(EV_ROOT, ["*.index"])
    assert wanted(EV_ROOT, ["events.out.tfevents.*"]) and not wanted(EV_ROOT, ["*.V2"])  # case-sensitive


def test_temporary_names_are_hidden_and_never_look_like_event_files() -> None:
    names = {part_name(rel) for rel in (EV_ROOT, EV_TRAIN, "x/events.out.tfevents.9.v2")}
    assert len(names) == 3  # one per file name; the file goes beside its final name, in the same folder
    assert part_name("train/" + EV_ROOT) == part_name(EV_ROOT)
    for name in names:
        assert name.startswith(".") and name.endswith(PART_SUFFIX) and "tfevents" not in name and "/" not in name


def test_plan_pass() -> None:
    remote = {"new": (10, "e1"), "same": (5, "e2"), "grown": (9, "e3"), "rewritten": (4, "e5"),
              "unknown-same-size": (7, "e6"), "unknown-other-size": (7, "e7"), "tampered": (8, "e8")}
    local = {"same": 5, "grown": 6, "rewritten": 4, "unknown-same-size": 7, "unknown-other-size": 3,
             "tampered": 2, "gone": 1}
    known = {"same": (5, "e2"), "grown": (6, "old"), "rewritten": (4, "old"), "tampered": (8, "e8"),
             "gone": (1, "e9")}
    plan = plan_pass(remote, local, known, prune=True)
    assert plan.download == ["grown", "new", "rewritten", "tampered", "unknown-other-size"]
    assert plan.verify == ["unknown-same-size"] and plan.unchanged == ["same"] and plan.delete == ["gone"]
    assert plan_pass(remote, local, known, prune=False).delete == []
    assert plan_pass({}, {}, {}, prune=True).download == []


def test_by_folder_keeps_name_order_within_a_run() -> None:
    rels = ["train/events.2", "events.9", "train/events.1", "eval/events.5", "events.3"]
    assert by_folder(rels) == [["events.3", "events.9"], ["eval/events.5"], ["train/events.1", "train/events.2"]]


def test_the_mirror_reaches_ufile_only_through_list_and_download(client: UFileClient) -> None:
    view = ReadOnlyUFile(client)
    assert [n for n in dir(view) if not n.startswith("_")] == ["download", "list"]
    assert not hasattr(view, "upload") and not hasattr(view, "delete") and not hasattr(view, "__dict__")


# -- against the stand-in -------------------------------------------------------------------------------
def test_mirror_once_copies_only_event_files_keeps_folders_and_refetches_what_grew(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    for name, data in write_checkpoint(tmp_path / "trainer", 5).items():  # a checkpoint beside the event files
        server.put_object(BUCKET, PREFIX + name, data)
    events = {EV_ROOT: os.urandom(3000), EV_TRAIN: os.urandom(2000), EV_EVAL: os.urandom(1000)}
    for rel, data in {**events, "train/graph.pbtxt": b"node {}", "eval/notes.txt": b"x"}.items():
        server.put_object(BUCKET, PREFIX + rel, data)
    server.put_object(BUCKET, "coco/other/events.out.tfevents.1.x.v2", b"not under the prefix")
    env, dest = storage_env(server, creds), tmp_path / "tb"

    r = run(_mirror_args(dest, "--once"), env)
    assert r.proc.returncode == 0, r.stderr
    assert _tree(dest) == events  # no checkpoint, no other file, no temporary file; folders kept
    assert "3 files downloaded" in r.stderr
    assert _methods(server) == {"GET"}  # a listing and three downloads: nothing written, nothing deleted
    assert sorted(_object_gets(server)) == sorted(PREFIX + rel for rel in events)
    inode = (dest / EV_ROOT).stat().st_ino

    # the training goes on: its event file grows (sync uploads it whole again), a new pod starts a new file,
    # and the eval run is deleted from the bucket
    grown = events[EV_ROOT] + os.urandom(700)
    server.put_object(BUCKET, PREFIX + EV_ROOT, grown)
    ev_new = "events.out.tfevents.1700000900.pod-b.1.0.v2"
    server.put_object(BUCKET, PREFIX + ev_new, b"pod b")
    assert server.store.delete(BUCKET, PREFIX + EV_EVAL)
    seen = len(server.requests_log)
    r = run(_mirror_args(dest, "--once"), env)
    assert r.proc.returncode == 0, r.stderr
    assert _tree(dest) == {EV_ROOT: grown, EV_TRAIN: events[EV_TRAIN], ev_new: b"pod b"}
    assert (dest / EV_ROOT).stat().st_ino != inode  # replaced by a rename, never rewritten in place
    # the train run's file is still identical (size and ETag checked locally): not downloaded again
    assert sorted(_object_gets(server, seen)) == sorted([PREFIX + EV_ROOT, PREFIX + ev_new])
    assert "2 files downloaded" in r.stderr and "1 unchanged, 1 removed" in r.stderr
    assert _methods(server) == {"GET"}
    assert server.get_object(BUCKET, PREFIX + "checkpoint") is not None  # the bucket is as it was
    r.assert_no_secret(creds)


def test_passes_refetch_changed_objects_and_no_prune_keeps_removed_ones(
    server: UFileServer, client: UFileClient, tmp_path: Path
) -> None:
    dest = tmp_path / "tb"
    server.put_object(BUCKET, PREFIX + EV_ROOT, b"a" * 100)
    server.put_object(BUCKET, PREFIX + EV_TRAIN, b"t" * 50)
    mirror = Mirror(ReadOnlyUFile(client), UFileURL(BUCKET, PREFIX), dest, parallel=2, prune=False)
    assert sorted(mirror.run_pass().downloaded) == [EV_ROOT, EV_TRAIN]
    res = mirror.run_pass()
    assert res.downloaded == [] and res.unchanged == [EV_ROOT, EV_TRAIN]
    server.put_object(BUCKET, PREFIX + EV_ROOT, b"b" * 100)  # same size, other content: the ETag tells
    assert mirror.run_pass().downloaded == [EV_ROOT]
    assert (dest / EV_ROOT).read_bytes() == b"b" * 100
    (dest / EV_TRAIN).unlink()  # a local copy lost: fetched again
    server.store.delete(BUCKET, PREFIX + EV_ROOT)
    res = mirror.run_pass()
    assert res.downloaded == [EV_TRAIN] and res.removed == []
    assert _tree(dest) == {EV_ROOT: b"b" * 100, EV_TRAIN: b"t" * 50}  # --no-prune: the removed one stays
    assert _methods(server) == {"GET"}


def test_one_failing_file_does_not_stop_the_others(
    server: UFileServer, client: UFileClient, tmp_path: Path
) -> None:
    for rel in (EV_ROOT, EV_TRAIN, EV_EVAL):
        server.put_object(BUCKET, PREFIX + rel, rel.encode())
    server.add_fault(Fault("status", method="GET", key=PREFIX + EV_TRAIN, count=FAST.attempts, status=503))
    mirror = Mirror(ReadOnlyUFile(client), UFileURL(BUCKET, PREFIX), tmp_path, parallel=3)
    res = mirror.run_pass()
    assert sorted(res.downloaded) == sorted([EV_ROOT, EV_EVAL]) and list(res.failed) == [EV_TRAIN]
    assert "HTTP 503" in res.failed[EV_TRAIN] and f"ufile://{BUCKET}/{PREFIX}{EV_TRAIN}" in res.failed[EV_TRAIN]
    assert not (tmp_path / EV_TRAIN).exists() and not list(tmp_path.rglob(f"*{PART_SUFFIX}*"))
    res = mirror.run_pass()  # the next pass catches up
    assert res.downloaded == [EV_TRAIN] and res.failed == {}
    assert (tmp_path / EV_TRAIN).read_bytes() == EV_TRAIN.encode()


def test_a_download_in_progress_never_looks_like_an_event_file(
    server: UFileServer, client: UFileClient, tmp_path: Path
) -> None:
    server.put_object(BUCKET, PREFIX + EV_TRAIN, b"e" * 10_000)
    server.add_fault(Fault("truncate", method="GET", key=PREFIX + EV_TRAIN, count=1))  # half the body, then cut
    during: list[list[str]] = []  # the folder's files while the client backs off before resuming

    def look(seconds: float) -> None:
        during.append(sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()))

    client.sleep = look
    res = Mirror(ReadOnlyUFile(client), UFileURL(BUCKET, PREFIX), tmp_path).run_pass()
    assert res.downloaded == [EV_TRAIN]
    assert during == [[f"train/{part_name(EV_TRAIN)}"]]  # hidden, no "tfevents": TensorBoard passes it by
    assert len(server.requests_matching("GET", PREFIX + EV_TRAIN)) == 2
    assert _tree(tmp_path) == {EV_TRAIN: b"e" * 10_000}


@pytest.mark.timeout(60)
def test_loop_survives_an_outage_follows_growth_and_stops_on_sigterm(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    dest = tmp_path / "tb"
    server.put_object(BUCKET, PREFIX + EV_ROOT, b"step 1")
    # the first pass's listing fails on both of its attempts (HTTP 503): the loop logs it and goes on
    server.add_fault(Fault("status", method="GET", key="", query="list", count=2, status=503))
    m = Run(_mirror_args(dest, "--interval=0.2", "--attempts=2"), storage_env(server, creds))
    m.wait_for("mirror pass failed, will retry in 0.2s")
    assert "HTTP 503" in m.stderr and not dest.joinpath(EV_ROOT).exists()
    _wait_until(lambda: dest.joinpath(EV_ROOT).exists(), 15, "the first copy")
    assert (dest / EV_ROOT).read_bytes() == b"step 1"
    server.put_object(BUCKET, PREFIX + EV_ROOT, b"step 1, step 2")
    _wait_until(lambda: (dest / EV_ROOT).read_bytes() == b"step 1, step 2", 15, "the grown copy")
    assert m.proc.poll() is None
    m.proc.send_signal(signal.SIGTERM)
    assert m.finish(timeout=15) == 0, m.stderr
    assert "SIGTERM received, stopping" in m.stderr and "mirror: stopped" in m.stderr
    assert _methods(server) == {"GET"}
    m.assert_no_secret(creds)


@pytest.mark.timeout(60)
def test_sigterm_exits_0_promptly_mid_download_and_between_passes(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    dest = tmp_path / "tb"
    server.put_object(BUCKET, PREFIX + EV_ROOT, b"x" * 5000)
    server.add_fault(Fault("slow", method="GET", key=PREFIX + EV_ROOT, delay=20, count=1))
    env = storage_env(server, creds)
    m = Run(_mirror_args(dest, "--interval=30"), env)
    _wait_until(lambda: bool(_object_gets(server)), 15, "the download to start")
    started = time.monotonic()
    m.proc.send_signal(signal.SIGTERM)
    assert m.finish(timeout=15) == 0, m.stderr
    assert time.monotonic() - started < MIRROR_STOP_GRACE + 2
    assert "still in flight" in m.stderr
    assert not (dest / EV_ROOT).exists()  # never a partial file under the final name
    (dest / f".mirror-0123456789abcdef{PART_SUFFIX}").write_bytes(b"left by a killed pod")
    r = run(_mirror_args(dest, "--once"), env)
    assert r.proc.returncode == 0, r.stderr
    assert _tree(dest) == {EV_ROOT: b"x" * 5000}  # leftovers removed
    m.assert_no_secret(creds)

    # between passes (waiting out a 30 s interval): a clean stop, at once
    seen = len(server.requests_log)
    m = Run(_mirror_args(dest, "--interval=30"), env)
    _wait_until(lambda: len(server.requests_log) > seen, 15, "the first pass's listing")
    m.wait_for("mirror: watching")
    time.sleep(0.3)
    started = time.monotonic()
    m.proc.send_signal(signal.SIGTERM)
    assert m.finish(timeout=15) == 0, m.stderr
    assert time.monotonic() - started < 2
    assert "mirror: stopped" in m.stderr and "still in flight" not in m.stderr
    assert _object_gets(server, seen) == []  # the copy was already identical


def test_refused_keys_end_the_loop_with_exit_1_and_no_secret(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    wrong = storage_env(server, creds, UFILE_PRIVATE_KEY="not-" + creds.private_key)
    r = run(_mirror_args(tmp_path, "--interval=0.1"), wrong, timeout=30)
    assert r.proc.returncode == 1
    assert "im2txt_storage mirror: failed: list" in r.stderr and "HTTP 403" in r.stderr
    assert "UFILE_PRIVATE_KEY" in r.stderr and "not-" + creds.private_key not in r.stderr
    r.assert_no_secret(creds)
    r = run(_mirror_args(tmp_path, "--once", "--include="), storage_env(server, creds))
    assert r.proc.returncode == 2 and "--include needs a non-empty glob" in r.stderr


@pytest.mark.parametrize("argv", [
    ["mirror", f"--output-url={OUTPUT_URL}", "--output-dir=/tb", "--inclu=*"],
    ["mirror", f"--output-url={OUTPUT_URL}", "--output-d=/tb", "--output-dir=/x"],
    ["mirror", f"--output-url={OUTPUT_URL}", "--output-dir=/tb", "--onc"],
])
def test_mirror_refuses_abbreviated_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_mirror_flags_parse() -> None:
    a = build_parser().parse_args(_mirror_args(Path("/tensorboard/logs")))
    assert (a.command, a.output_url, a.output_dir, a.interval, a.include, a.once, a.prune) == (
        "mirror", OUTPUT_URL, Path("/tensorboard/logs"), 30.0, None, False, True)
    a = build_parser().parse_args(_mirror_args(Path("/tb"), "--interval=5", "--include=*.v2", "--include=a*",
                                               "--once", "--no-prune", "--parallel=2"))
    assert (a.interval, a.include, a.once, a.prune, a.parallel) == (5.0, ["*.v2", "a*"], True, False, 2)


# -- a real TensorBoard reads the mirror ---------------------------------------------------------------
class TensorBoard:
    """`tensorboard` (the venv's entry point) on a port the OS picks, read back from its banner."""

    def __init__(self, logdir: Path) -> None:
        exe = Path(sys.executable).with_name("tensorboard")
        assert exe.exists(), f"{exe} is missing: tensorboard is in requirements/trainer.txt"
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.argv = [str(exe), f"--logdir={logdir}", "--host=127.0.0.1", "--port=0", "--reload_interval=0.5",
                     *TB_FLAGS]
        self.proc = subprocess.Popen(self.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, name="tensorboard-stderr", daemon=True).start()
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never the stand-in proxy

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()

    def get(self, path: str) -> Any:
        if not self._ready.wait(90) or self.url is None:
            raise AssertionError("TensorBoard did not start:\n" + "".join(self.lines[-30:]))
        with self._http.open(self.url + path, timeout=10) as resp:
            return json.load(resp)

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        tags = self.get("/data/plugin/scalars/tags")
        if tag not in tags.get(run, {}):
            return []
        return [(step, value) for _, step, value in
                self.get(f"/data/plugin/scalars/scalars?run={run}&tag={tag}")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_tensorboard_serves_the_mirrored_scalars_and_follows_a_grown_event_file(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    train_dir, logdir = tmp_path / "pod" / "output", tmp_path / "tb"
    logdir.mkdir()
    tb = TensorBoard(logdir)  # started first, as the TensorBoard pod does: its start overlaps the TF import below
    try:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(train_dir))  # as train.py does, straight into train_dir
        losses = {1: 4.0, 2: 3.5, 3: 3.25, 4: 3.0, 5: 2.75}

        def write(steps: list[int]) -> None:
            with writer.as_default():
                for step in steps:
                    tf.summary.scalar("losses/total_loss", losses[step], step=step)
                    tf.summary.scalar("learning_rate", 2.0, step=step)
            writer.flush()

        write([1, 2, 3])
        write_checkpoint(train_dir, 3)
        syncer = Syncer(UFileClient(creds, FAST), UFileURL(BUCKET, PREFIX), train_dir, parallel=4)
        assert any("tfevents" in rel for rel in syncer.run_round().uploaded)  # the sidecar of the training pod
        env, seen = storage_env(server, creds), len(server.requests_log)

        r = run(_mirror_args(logdir, "--once"), env)
        assert r.proc.returncode == 0, r.stderr
        assert _methods(server, seen) == {"GET"}  # the mirror only reads
        (event_file,) = (p.name for p in train_dir.iterdir() if "tfevents" in p.name)
        assert sorted(_tree(logdir)) == [event_file]

        _wait_until(lambda: tb.scalars(".", "losses/total_loss") != [], 90, "TensorBoard to load the run", every=0.25)
        assert tb.get("/data/runs") == ["."]
        assert tb.scalars(".", "losses/total_loss") == [(s, pytest.approx(losses[s])) for s in (1, 2, 3)]
        assert set(tb.get("/data/plugin/scalars/tags")["."]) == {"losses/total_loss", "learning_rate"}

        write([4, 5])  # the training goes on; sync uploads the grown file whole, the mirror replaces its copy
        assert any("tfevents" in rel for rel in syncer.run_round().uploaded)
        seen = len(server.requests_log)
        r = run(_mirror_args(logdir, "--once"), env)
        assert r.proc.returncode == 0, r.stderr
        assert "1 files downloaded" in r.stderr and _methods(server, seen) == {"GET"}
        _wait_until(lambda: len(tb.scalars(".", "losses/total_loss")) == 5, 30, "TensorBoard to read steps 4-5",
                    every=0.25)
        assert tb.scalars(".", "losses/total_loss") == [(s, pytest.approx(losses[s])) for s in range(1, 6)]
        assert sorted(_tree(logdir)) == [event_file]
        writer.close()
    finally:
        tb.stop()
    assert tb.proc.returncode is not None
