"""A leader-elected operator process that cannot reach the API at all (nothing listens at its kubeconfig's address):
the standby says so once (no "held by None") and answers 503. No API server is needed. Where the API answers but
misbehaves on purpose (a leader frozen past its Lease, a Kubernetes older than the oldest supported), the process
runs on the real API server behind a fault proxy: tests/cluster/test_cluster_failover.py and
test_cluster_version.py; the rest of leader election is in tests/cluster/test_cluster_leader.py."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness import free_port, wait_for
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
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self.reader.cancel()
        if exc[0] is not None:
            print(f"--- operator log ---\n{self.log}")


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
    """The first answer with the expected status (in a thread: this event loop reads the operator's output)."""
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
