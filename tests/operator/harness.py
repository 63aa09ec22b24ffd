"""Harness of the emulator tests (the demo's smoke test, the emulator's own tests): the API emulator in-process, the
real operator as a subprocess, the Job controller's part. Controller scenarios live on tests/cluster/ instead."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from operator_support import CRD_PATH, ROOT

from im2txt_standins.kube_api import KubeAPI

TRAININGS = ("im2txt.dev", "v1alpha1", "im2txttrainings")
JOBS = ("batch", "v1", "jobs")
PODS = ("", "v1", "pods")
EVENTS = ("", "v1", "events")
CLAIMS = ("", "v1", "persistentvolumeclaims")
PVC_SPEC = {"dataPath": "pvc://coco-data/mscoco", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
            "stage2NumberOfSteps": 300, "gpus": 0}


@contextlib.asynccontextmanager
async def emulator(tmp_path: Path) -> AsyncIterator[KubeAPI]:
    async with KubeAPI.running(kubeconfig=tmp_path / "kubeconfig", crds=[CRD_PATH]) as api:
        yield api


class Operator:
    """``python -m im2txt_operator run --all-namespaces`` against the emulator."""

    def __init__(self, kubeconfig: Path, interval: float = 0.5, args: tuple[str, ...] = ("--all-namespaces",)) -> None:
        self.kubeconfig = kubeconfig
        self.interval = interval
        self.args = args
        self.metrics_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Operator:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "IM2TXT_PROGRESS_INTERVAL": str(self.interval),
               "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("operator", "standins"))}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "im2txt_operator", "run", *self.args, "--liveness=",
            f"--metrics-port={self.metrics_port}", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())
        await wait_for(lambda: any("Initial authentication has finished" in line for line in self.lines),
                       timeout=30, what="operator start")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    async def stop(self, kill: bool = True) -> None:
        """SIGKILL by default: the operator gets no chance to clean up, as when a node dies."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 10)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        self.lines.clear()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def operator(api: KubeAPI, tmp_path: Path, interval: float = 0.5,
                   args: tuple[str, ...] = ("--all-namespaces",)) -> AsyncIterator[Operator]:
    op = Operator(tmp_path / "kubeconfig", interval, args)
    await op.start()
    try:
        yield op
    except BaseException:
        print(f"--- operator log ---\n{op.log}")  # pytest shows it beside the failure
        raise
    finally:
        await op.stop()


async def wait_for(predicate: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def add_claim(api: KubeAPI, name: str, ns: str = "default") -> None:
    if api.get_object(CLAIMS, ns, name) is None:
        api.create_object(CLAIMS, {"metadata": {"name": name, "namespace": ns},
                                   "spec": {"accessModes": ["ReadWriteMany"],
                                            "resources": {"requests": {"storage": "1Ti"}}}})


def new_training(api: KubeAPI, name: str, spec: dict[str, Any] | None = None, ns: str = "default",
                 claims: bool = True) -> dict[str, Any]:
    """A training (by default on PVC paths, whose claims are created too unless ``claims`` is False), writing to
    an output folder of its own (pvc://runs/<name>/): two trainings on one folder wait for each other."""
    full = {**PVC_SPEC, "outputPath": f"pvc://runs/{name}/", **(spec or {})}
    for key in ("dataPath", "outputPath"):
        if claims and full[key].startswith("pvc://"):
            add_claim(api, full[key][len("pvc://"):].split("/")[0], ns)
    return api.create_object(TRAININGS, {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                         "metadata": {"name": name, "namespace": ns},
                                         "spec": full})


def training(api: KubeAPI, name: str, ns: str = "default") -> dict[str, Any]:
    return api.get_object(TRAININGS, ns, name) or {}


def status(api: KubeAPI, name: str, ns: str = "default") -> dict[str, Any]:
    return training(api, name, ns).get("status") or {}


def condition(api: KubeAPI, name: str, type_: str, ns: str = "default") -> dict[str, Any]:
    for c in status(api, name, ns).get("conditions") or ():
        if c["type"] == type_:
            return c
    return {}


def job(api: KubeAPI, name: str, ns: str = "default") -> dict[str, Any] | None:
    return api.get_object(JOBS, ns, name)


def jobs(api: KubeAPI, ns: str = "default") -> list[str]:
    return sorted(j["metadata"]["name"] for j in api.list_objects(JOBS, ns))


def event_reasons(api: KubeAPI, name: str, ns: str = "default") -> list[str]:
    evs = [e for e in api.list_objects(EVENTS, ns) if e.get("involvedObject", {}).get("name") == name]
    return [e["reason"] for e in sorted(evs, key=lambda e: int(e["metadata"]["resourceVersion"]))]


def complete_job(api: KubeAPI, name: str, ns: str = "default") -> None:
    """What the Job controller writes when the pod succeeded."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    api.patch_object(JOBS, ns, name, {"status": {
        "succeeded": 1, "active": 0, "startTime": now, "completionTime": now,
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                       {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]}}, status=True)


def start_pod(api: KubeAPI, job_name: str, log: str, ns: str = "default", sidecars: tuple[str, ...] = ()) -> str:
    """The pod the Job controller would create, Running, with the trainer's log text (and native ``sidecars``)."""
    pod = f"{job_name}-x7k2p"
    spec: dict[str, Any] = {"containers": [{"name": "trainer", "image": "i"}]}
    if sidecars:
        spec["initContainers"] = [{"name": n, "image": "i", "restartPolicy": "Always"} for n in sidecars]
    api.create_object(PODS, {"metadata": {"name": pod, "namespace": ns, "labels": {"job-name": job_name}},
                             "spec": spec})
    api.patch_object(PODS, ns, pod, {"status": {"phase": "Running"}}, status=True)
    api.set_log(ns, pod, "trainer", log)
    return pod
