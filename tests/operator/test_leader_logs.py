"""What a leader-elected operator process says and answers where the API must misbehave on purpose (the emulator's
fault injection): a leader frozen past its Lease writes nothing when it thaws, a Kubernetes older than the oldest
supported is refused before anything is watched or written, and a standby that cannot reach the API says so (no
"held by None") and answers 503. What needs no fault (a restarted leader taking its Lease back, the standby's
metrics) is on the real API server: tests/cluster/test_cluster_leader.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness import emulator, free_port, wait_for
from operator_support import ROOT

from im2txt_standins.kube_api import write_kubeconfig

pytestmark = pytest.mark.timeout(90)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _elected(identity: str, health: str) -> tuple[str, ...]:
    return ("--all-namespaces", "--leader-elect", f"--identity={identity}", "--lease-namespace=default",
            f"--liveness={health}")


class Process:
    """The operator as the Deployment runs it (harness.Operator turns the health endpoint off)."""

    def __init__(self, kubeconfig: Path, args: tuple[str, ...]) -> None:
        self.kubeconfig, self.args, self.lines = kubeconfig, args, []  # type: Path, tuple[str, ...], list[str]

    async def __aenter__(self) -> Process:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("operator", "standins"))}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "im2txt_operator", "run", "--metrics-port=0", *self.args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:  # it may have exited by itself (a leader that lost its Lease)
            self.proc.kill()
        await self.proc.wait()
        self.reader.cancel()
        if exc[0] is not None:
            print(f"--- operator log ---\n{self.log}")


@pytest.mark.timeout(120)
async def test_a_leader_frozen_past_its_lease_writes_nothing_when_it_thaws(tmp_path: Path) -> None:
    """The leader is frozen (SIGSTOP) in the middle of a reconcile, past its Lease; the standby takes over and
    advances the training a stage; SIGCONT: the thawed process holds a decision made on what it read before, and
    must not write it (every write is fenced by the time left on its Lease). It steps down."""
    from harness import complete_job, job, new_training, status

    async with emulator(tmp_path) as api:
        ops = [Process(tmp_path / "kubeconfig", _elected(f"op-{i}", f"http://127.0.0.1:{free_port()}/healthz"))
               for i in range(2)]
        async with ops[0] as old:
            await wait_for(lambda: any("became the leader" in x for x in old.lines), timeout=30, what="op-0 leads")
            async with ops[1] as new:
                new_training(api, "coco", {"autoAdvance": True})
                await wait_for(lambda: job(api, "coco-stage1"), what="stage 1's Job")
                # A slow pod list: the stage's end is read from its pods before the status patch, so op-0 is
                # caught between reading and writing when it is frozen.
                api.delays.append((lambda r: "/pods" in r.url.path, 3.0))
                complete_job(api, "coco-stage1")
                await asyncio.sleep(1.0)
                old.proc.send_signal(signal.SIGSTOP)
                try:
                    await wait_for(lambda: any("became the leader" in x for x in new.lines), timeout=30,
                                   what="op-1 takes over")
                    await wait_for(lambda: job(api, "coco-stage2") and status(api, "coco").get("stage") == 2,
                                   timeout=20, what="op-1 starts stage 2")
                    await asyncio.sleep(1.0)  # op-1 done with it (events posted)
                    api.delays.clear()
                    # The thawed op-0 learns only after 2 s that it lost the Lease: time enough to write.
                    api.delays.append((lambda r: "/leases" in r.url.path, 2.0))
                    before = {k: v for k, v in api.writes.items() if "lease" not in k}
                finally:
                    old.proc.send_signal(signal.SIGCONT)
                await wait_for(lambda: old.proc.returncode is not None, timeout=20, what="the thawed op-0 to exit")
                await asyncio.sleep(0.5)
                after = {k: v for k, v in api.writes.items() if "lease" not in k}
                assert after == before, (before, after, old.log)
                # Which guard stops it depends on what the thawed loop runs first: the renewal loop, which sees no
                # time left and exits, or a reconcile, whose write the client refuses (test_leader.py proves each).
                assert old.proc.returncode == 1 and any("lost the Lease" in x or "could not renew" in x
                                                         for x in old.lines), old.log


async def test_a_kubernetes_older_than_1_29_is_refused_with_the_reason_and_a_503(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        api.version = {"major": "1", "minor": "28", "gitVersion": "v1.28.15"}
        health = f"http://127.0.0.1:{free_port()}/healthz"
        async with Process(tmp_path / "kubeconfig", _elected("op-0", health)) as op:
            _status, body = await _until_answered(health, 503)
            assert body.startswith("not starting: Kubernetes v1.28.15 is older than 1.29, the oldest this operator "
                                   "supports (supported: 1.29 to 1.36)"), body
            assert "restartPolicy: Always" in body  # why: the checkpoint sidecar would be dropped
            assert sum("not starting: Kubernetes v1.28.15" in x for x in op.lines) == 1, op.log
            await asyncio.sleep(1.0)
            assert api.writes == {}, api.writes  # no Lease claimed, nothing written
            assert op.proc.returncode is None  # it waits (re-reading the version), it does not crash-loop
        api.version = {"major": "1", "minor": "29+", "gitVersion": "v1.29.3-eks-1234"}  # a managed cluster's spelling
        async with Process(tmp_path / "kubeconfig", _elected("op-0", health)) as op:
            await wait_for(lambda: any("became the leader" in x for x in op.lines), what="leader line")
            assert any("Kubernetes v1.29.3-eks-1234 (supported: 1.29 to 1.36)" in x for x in op.lines), op.log
            await _until_answered(health, 200)


async def test_a_standby_that_cannot_reach_the_api_says_what_happened_and_is_not_ready(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")  # nothing listens
    health = f"http://127.0.0.1:{free_port()}/healthz"
    async with Process(kubeconfig, _elected("op-1", health)) as op:
        await wait_for(lambda: any("cannot read or claim the Lease" in x for x in op.lines), timeout=30,
                       what="the standby's line")
        _status, body = await _until_answered(health, 503)
        assert "cannot read the Lease default/im2txt-operator" in body and "Connect" in body, body
        await asyncio.sleep(2.5)  # more failed attempts: the same error is not logged again
        assert "None" not in op.log, op.log
        assert sum("cannot read or claim" in x for x in op.lines) == 1, op.log


async def _until_answered(url: str, expected: int, timeout: float = 20) -> tuple[int, str]:
    """The first answer with the expected status (in a thread: the emulator serves on this event loop)."""
    answer: tuple[int, str] | None = None
    for _ in range(int(timeout / 0.2)):
        try:
            answer = await asyncio.to_thread(_get, url)
        except OSError:
            answer = None  # not listening yet
        if answer is not None and answer[0] == expected:
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not answer {expected}; last answer {answer}")
