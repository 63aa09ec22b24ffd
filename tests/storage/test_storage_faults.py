"""`sync` and `fetch` through a fault-injecting proxy (tests/storage/fault_proxy.py) in front of the stand-in, with
the real SDK, while a writer saves checkpoints the way TensorFlow does (issue 25).

What is checked is what a resuming stage depends on: the bucket's `checkpoint` index never names a file the
bucket does not hold (checked on the exact history of requests the stand-in carried out, one at a time), and it
stays close behind the trainer; after SIGTERM the final upload keeps its deadline and says what the bucket holds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule
from storage_helpers import BUCKET, FAST, ROOT, storage_env, write_checkpoint

from im2txt_standins.ufile_server import UFileServer
from im2txt_storage.client import ClientSettings, Credentials, RemoteObject, UFileClient

PREFIX = "coco/output/"
OUTSIDE = {"coco/output-old/model.ckpt-1.index": b"a neighbour's checkpoint", "coco/notes.txt": b"keep me"}


# -- what the stand-in carried out -------------------------------------------------------------------------
@dataclass
class Event:
    t: float
    method: str
    key: str
    index_text: str | None  # the body of a PUT of the `checkpoint` index


class History:
    """Every change the stand-in made, in the order it made it: requests are carried out one at a time."""

    def __init__(self, server: UFileServer) -> None:
        self.events: list[Event] = []
        lock = threading.Lock()
        handle = server.service.handle

        def serialized(method, bucket, key, query, headers, body):  # type: ignore[no-untyped-def]
            with lock:
                resp = handle(method, bucket, key, query, headers, body)
                if method in ("PUT", "POST", "DELETE") and resp.status in (200, 204):
                    text = body.decode() if method == "PUT" and key == PREFIX + "checkpoint" else None
                    self.events.append(Event(time.monotonic(), method, key, text))
                return resp

        server.service.handle = serialized  # type: ignore[method-assign]


# -- a trainer that saves like TensorFlow ------------------------------------------------------------------
@dataclass
class Writer:
    """Saves `model.ckpt-<step>` every `period` seconds: data and .meta, then the .index (a checkpoint is complete
    once its .index exists), then the `checkpoint` file atomically; keeps the newest `keep`."""

    folder: Path
    period: float
    keep: int = 5
    size: int = 48_000
    saved: dict[int, float] = field(default_factory=dict)  # step -> when its index named it (monotonic)
    files: dict[int, list[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        step = 0
        while not self.stop.wait(self.period if step else 0):
            step += 100
            prefix = f"model.ckpt-{step}"
            names = [f"{prefix}.data-00000-of-00001", f"{prefix}.meta", f"{prefix}.index"]
            for name in names:
                tmp = self.folder / f".tmp-{name}"
                tmp.write_bytes(os.urandom(self.size if "data" in name else 400))
                os.replace(tmp, self.folder / name)
            self.files[step] = names
            kept = sorted(self.files)[-self.keep:]
            text = f'model_checkpoint_path: "{prefix}"\n' + "".join(
                f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in kept)
            (self.folder / ".checkpoint.tmp").write_text(text)
            os.replace(self.folder / ".checkpoint.tmp", self.folder / "checkpoint")
            self.saved[step] = time.monotonic()
            for old in sorted(self.files)[: -self.keep]:
                for name in self.files[old]:
                    (self.folder / name).unlink(missing_ok=True)

    @property
    def last(self) -> int:
        return max(self.saved)


def _named(text: str) -> tuple[int, set[int]]:
    latest = re.search(r'^model_checkpoint_path: "model\.ckpt-(\d+)"', text, re.M)
    assert latest, text
    return int(latest.group(1)), {int(s) for s in re.findall(r'"model\.ckpt-(\d+)"', text)}


def replay(events: list[Event], writer: Writer, start: float, end: float) -> tuple[list[str], float, int]:
    """-> (every moment the bucket's index named a missing file, the largest lag of the bucket's index behind
    the trainer in [start, end] in seconds, how many times an index was published)."""
    bad: list[str] = []
    held: set[str] = set()
    named: set[int] = set()
    latest = -1
    lag = 0.0
    publishes = 0

    def lag_until(t: float) -> float:
        # behind since the trainer saved the first checkpoint newer than the one the bucket names
        newer = [s for s in writer.saved if s > latest and writer.saved[s] < t]
        return t - max(writer.saved[min(newer)], start) if newer else 0.0

    for ev in events:
        if ev.t > end:
            break
        if ev.method == "DELETE":
            held.discard(ev.key)
            step = re.search(r"model\.ckpt-(\d+)\.", ev.key)
            if step and int(step.group(1)) in named:
                bad.append(f"{ev.key} deleted while the index names it")
            continue
        held.add(ev.key)
        if ev.index_text is None:
            continue
        publishes += 1
        lag = max(lag, lag_until(ev.t))
        latest, named = _named(ev.index_text)
        for step in named:
            missing = [n for n in writer.files.get(step, ["?"]) if PREFIX + n not in held]
            if missing:
                bad.append(f"index names model.ckpt-{step} but the bucket lacks {missing}")
    return bad, max(lag, lag_until(end)), publishes


def _sync(server_env: dict[str, str], out: Path, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "im2txt_storage", "sync", f"--output-url=ufile://{BUCKET}/{PREFIX}",
            f"--output-dir={out}", *flags]
    return subprocess.Popen(argv, env=server_env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_for(path: Path, needle: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, path.read_text(errors="replace")
        time.sleep(0.05)


def _outside_untouched(server: UFileServer, history: History) -> None:
    assert all(ev.key.startswith(PREFIX) for ev in history.events)
    for key, data in OUTSIDE.items():
        assert server.get_object(BUCKET, key) == data


def _use_proxy(monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy) -> None:
    for name, value in proxy.env.items():
        monkeypatch.setenv(name, value)


# -- the tests -------------------------------------------------------------------------------------------
INTERVAL, TIMEOUT, SAVE_PERIOD, RUN_FOR = 2.0, 1.0, 1.0, 16.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rate", [0.2, 0.3])
def test_index_stays_within_two_intervals_and_never_names_a_missing_file(
    server: UFileServer, creds: Credentials, tmp_path: Path, rate: float
) -> None:
    for key, data in OUTSIDE.items():
        server.put_object(BUCKET, key, data)
    history = History(server)
    out, log, ended = tmp_path / "output", tmp_path / "sync.log", tmp_path / "termination-log"
    writer = Writer(out, SAVE_PERIOD)
    with FaultProxy(server.proxy_url, ca=server.ca, rate=rate, seed=int(rate * 100), stall=3 * TIMEOUT) as proxy:
        env = storage_env(server, creds, **proxy.env, IM2TXT_TERMINATION_LOG=str(ended))
        sync = _sync(env, out, log, f"--interval={INTERVAL:g}", f"--timeout={TIMEOUT:g}", "--parallel=4")
        try:
            _wait_for(log, "sync: watching")
            thread = threading.Thread(target=writer.run, daemon=True)
            thread.start()
            time.sleep(RUN_FOR)
            writer.stop.set()
            thread.join()
            end = time.monotonic()
            sync.send_signal(signal.SIGTERM)
            rc = sync.wait(timeout=60)
        finally:
            sync.kill()
        text = log.read_text()
        bad, lag, publishes = replay(history.events, writer, min(writer.saved.values()), end)
        print(f"rate {rate}: faults {dict(proxy.faults)} of {len(proxy.seen)} requests; {publishes} index "
              f"publishes for {len(writer.saved)} saves; largest lag {lag:.2f}s")
    assert sum(proxy.faults.values()) > rate * len(proxy.seen) / 2  # the faults did happen
    assert all(seen.tls for seen in proxy.seen)  # inside TLS connections, as in production
    assert bad == []
    assert lag <= 2 * INTERVAL + TIMEOUT, f"the bucket's index was {lag:.2f}s behind the trainer; sync log: {log}"
    assert rc == 0, text
    assert _named(server.get_object(BUCKET, PREFIX + "checkpoint").decode())[0] == writer.last  # type: ignore[union-attr]
    assert f"published checkpoint model.ckpt-{writer.last} (index uploaded)" in text
    # The final upload, where the operator reads it (the pod's status): the checkpoint the bucket's index names.
    assert ended.read_text() == f"sync: published checkpoint model.ckpt-{writer.last}\n"
    _outside_untouched(server, history)
    assert creds.public_key not in text and creds.private_key not in text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hang", ["blackhole", "trickle"])
def test_sigterm_against_a_service_that_never_answers_ends_inside_the_deadline(
    server: UFileServer, creds: Credentials, tmp_path: Path, hang: str
) -> None:
    """blackhole: requests time out (their timeouts shrink to the deadline); trickle: a byte every 0.2 s keeps
    every read timeout from firing, so only the sidecar's own wait for the final round ends it."""
    out, log, reason = tmp_path / "output", tmp_path / "sync.log", tmp_path / "termination-log"
    deadline = 6.0
    with FaultProxy(server.proxy_url, ca=server.ca) as proxy:
        env = storage_env(server, creds, **proxy.env, IM2TXT_TERMINATION_LOG=str(reason))
        # the default timeout (120 s) and attempts (6): the deadline alone must bound them
        sync = _sync(env, out, log, "--interval=0.5", f"--final-deadline-seconds={deadline:g}")
        try:
            _wait_for(log, "sync: watching")
            write_checkpoint(out, 100)
            _wait_for(log, "published checkpoint model.ckpt-100")
            setattr(proxy, hang, True)  # accepts connections, never answers (or never finishes answering)
            write_checkpoint(out, 200, keep=[100])
            time.sleep(1.5)  # a periodic round is now stuck on a request
            sent = time.monotonic()
            sync.send_signal(signal.SIGTERM)
            rc = sync.wait(timeout=deadline + 10)
            took = time.monotonic() - sent
        finally:
            sync.kill()
    text = log.read_text()
    print(f"{hang}: exit {rc} {took:.2f}s after SIGTERM (deadline {deadline}s)")
    assert rc == 1 and took <= deadline, (took, text)
    errors = [line for line in text.splitlines() if line.startswith("im2txt_storage sync: failed:")]
    assert len(errors) == 1, text
    assert f"the bucket's index ufile://{BUCKET}/{PREFIX}checkpoint names model.ckpt-100 (the trainer's newest " \
           "is model.ckpt-200)" in errors[0]
    assert reason.read_text().startswith("sync: final upload") and "names model.ckpt-100" in reason.read_text()
    assert reason.read_text().count("\n") == 1
    assert _named(server.get_object(BUCKET, PREFIX + "checkpoint").decode())[0] == 100  # type: ignore[union-attr]
    for text_ in (text, reason.read_text()):
        assert creds.public_key not in text_ and creds.private_key not in text_


@pytest.mark.timeout(90)
def test_a_cut_90_mib_download_finishes_by_range_resume(
    server: UFileServer, creds: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: every answer is cut at 40 MiB. Keeping what each answer brought finishes on the 3rd try
    (40 + 40 + 10 MiB); throwing it away would move 40 MiB per try forever."""
    size, cut = 90 * 1024 * 1024, 40 * 1024 * 1024
    data = os.urandom(size)
    etag = server.put_object(BUCKET, "coco/data/inception_v3.ckpt", data)
    with FaultProxy(server.proxy_url, ca=server.ca) as proxy:
        proxy.rules.append(Rule("cut", method="GET", key="coco/data/inception_v3.ckpt", cut_at=cut))
        _use_proxy(monkeypatch, proxy)
        client = UFileClient(creds, ClientSettings(read_timeout=10, attempts=3, backoff=0.01), pool_size=2)
        dest = tmp_path / "inception_v3.ckpt"
        client.download(BUCKET, RemoteObject("coco/data/inception_v3.ckpt", size, etag), dest)
    assert dest.read_bytes() == data
    gets = [s for s in proxy.seen if s.method == "GET"]
    assert [g.range for g in gets] == [None, f"bytes={cut}-{size - 1}", f"bytes={2 * cut}-{size - 1}"]
    assert sum(g.sent for g in gets) == size  # nothing was received twice
    assert list(tmp_path.iterdir()) == [dest]  # no partial files left


def test_cut_reply_headers_and_resets_are_named_as_such(
    server: UFileServer, creds: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "events.out.tfevents.1"
    src.write_bytes(b"x" * 1000)
    with FaultProxy(server.proxy_url, ca=server.ca) as proxy:
        proxy.rules += [Rule("cut", method="PUT", count=1), Rule("reset", method="PUT", count=1)]
        _use_proxy(monkeypatch, proxy)
        client = UFileClient(creds, FAST, pool_size=2)
        with caplog.at_level("INFO", logger="im2txt_storage"):
            obj = client.upload(BUCKET, PREFIX + src.name, src)
    assert server.get_object(BUCKET, obj.key) == src.read_bytes()
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2, retries
    assert "carried no ETag (its headers were cut off)" in retries[0] and "stored ETag ''" not in retries[0]
    assert "connection reset by peer" in retries[1] and "Unable to connect to proxy" not in retries[1]


@pytest.mark.timeout(60)
def test_a_stalled_sync_warns_when_the_index_falls_two_intervals_behind(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    out, log = tmp_path / "output", tmp_path / "sync.log"
    interval = 0.5
    with FaultProxy(server.proxy_url, ca=server.ca) as proxy:
        env = storage_env(server, creds, **proxy.env)
        sync = _sync(env, out, log, f"--interval={interval:g}", "--timeout=1", "--attempts=2")
        try:
            _wait_for(log, "sync: watching")
            write_checkpoint(out, 100)
            _wait_for(log, "published checkpoint model.ckpt-100 (index uploaded)")
            assert "level=warning" not in log.read_text()
            proxy.rules.append(Rule("status", method="PUT"))  # every upload fails from now on
            write_checkpoint(out, 200, keep=[100])
            saved = time.monotonic()
            _wait_for(log, "behind the trainer's newest checkpoint model.ckpt-200")
            warned = time.monotonic() - saved
            proxy.rules.clear()
            _wait_for(log, "published checkpoint model.ckpt-200 (index uploaded)")
            _wait_for(log, "the bucket's index caught up with the trainer (model.ckpt-200)")
            sync.send_signal(signal.SIGTERM)
            rc = sync.wait(timeout=30)
        finally:
            sync.kill()
    text = log.read_text()
    warning = next(line for line in text.splitlines() if "behind the trainer" in line)
    assert "level=warning" in warning and "names model.ckpt-100" in warning, warning
    # not before 2 intervals; soon after (the check runs after every round)
    assert 2 * interval < warned < 2 * interval + 4, warned
    assert rc == 0, text


def test_storage_commands_write_their_failure_reason_to_the_termination_log(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    reason = tmp_path / "termination-log"
    env = storage_env(server, creds, IM2TXT_TERMINATION_LOG=str(reason))
    argv = [sys.executable, "-m", "im2txt_storage", "fetch", f"--data-url=ufile://{BUCKET}/coco/data/",
            f"--data-dir={tmp_path / 'data'}"]
    r = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert reason.read_text() == (f"fetch: no objects under the data path ufile://{BUCKET}/coco/data/: check the "
                                  "training's dataPath\n")
    wrong = {**env, "UFILE_PRIVATE_KEY": "not-" + creds.private_key}
    mirror = [sys.executable, "-m", "im2txt_storage", "mirror", f"--output-url=ufile://{BUCKET}/{PREFIX}",
              f"--output-dir={tmp_path / 'tb'}", "--once"]
    r = subprocess.run(mirror, env=wrong, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert reason.read_text().startswith(f"mirror: list ufile://{BUCKET}/{PREFIX}") and "HTTP 403" in reason.read_text()
    assert "not-" + creds.private_key not in reason.read_text() and creds.public_key not in reason.read_text()
    # an unwritable path changes nothing else
    unwritable = {**env, "IM2TXT_TERMINATION_LOG": str(tmp_path / "no" / "such" / "dir" / "log")}
    r = subprocess.run(argv, env=unwritable, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "im2txt_storage fetch: failed: no objects under the data path" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(90)
def test_fetch_under_30_percent_faults_gets_every_byte_right(
    server: UFileServer, creds: Credentials, tmp_path: Path
) -> None:
    files = {f"train-{i:05d}-of-00016": os.urandom(150_000 + i) for i in range(16)}
    files["inception_v3.ckpt"] = os.urandom(9 * 1024 * 1024 + 5)  # 3 of the SDK's 4 MiB blocks: cut mid-object
    for name, data in files.items():
        server.put_object(BUCKET, f"coco/data/{name}", data)
    with FaultProxy(server.proxy_url, ca=server.ca, rate=0.3, seed=7, stall=3) as proxy:
        env = storage_env(server, creds, **proxy.env)
        argv = [sys.executable, "-m", "im2txt_storage", "fetch", f"--data-url=ufile://{BUCKET}/coco/data/",
                f"--data-dir={tmp_path / 'data'}", "--timeout=1", "--attempts=10", "--parallel=4"]
        r = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=80)
    print(f"fetch: faults {dict(proxy.faults)} of {len(proxy.seen)} requests")
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == files  # no partial file left
    assert proxy.faults["corrupt"] + proxy.faults["cut"] > 0
    assert creds.public_key not in r.stderr and creds.private_key not in r.stderr
