"""Operator benchmark (``make bench-operator``) on the real API server (the tools/envtest control plane).

For each N (default 100 and 1,000; ``--n 5000`` for the scale goal) the operator and a minimal raw-watch reactor
(operator_reactor.py: the floor) run in turn against the same control plane, which also holds ``--noise`` unrelated
Jobs with their pods. Trainings are created at ``--rate`` per second (a busy cluster's arrival rate, not one burst),
and their stage-1 pods are finished at the same rate (the bench plays the kubelet). Measured:
- p50/p99 from a training's create call returning to its stage-1 Job appearing (a watch of the bench's own);
- p50/p99 from a stage-1 Job's Complete condition to the stage-2 Job appearing;
- the implementation's API requests per stage transition, and per second at steady state with all N Running
  (from the API server's audit log: each implementation runs as its own ServiceAccount);
- its RSS, and CPU seconds per 1,000 trainings; the ratio of each latency to the reactor's;
- with ``--writing-reactor``, the same for the reactor that also writes status and an Event with each Job;
- the bench's own garbage-collection pauses while it times: a pause would be counted as the implementation's.
Goals (issue 19): apply->Job p99 <= 1.5x the reactor's and < 1 s at N = 1,000; stage advance p99 < 1 s at
N = 1,000; steady-state requests at or under the progress budget; RSS < 250 MiB at 5,000.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import math
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tools")]

from control_plane import ControlPlane, find_assets, kubeconfig  # noqa: E402

NS = "bench"  # where the implementations' ServiceAccounts live
MANAGED = "app.kubernetes.io/managed-by=im2txt-operator"
WHO = ("operator", "reactor", "reactor-writes")  # each implementation's ServiceAccount (and run namespace prefix)
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived", "ResponseStarted"],
                "rules": [{"level": "Metadata", "users": [f"system:serviceaccount:{NS}:{who}" for who in WHO]},
                          {"level": "None"}]}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))] if values else float("nan")


def proc_usage(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    rss = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(plane: ControlPlane, pid: int) -> dict[str, float]:
    """CPU seconds so far of the implementation, of each control-plane process and of the bench itself."""
    pids = {"impl": pid, **{name: p.pid for name, p in plane.procs.items()}, "bench": os.getpid()}
    return {name: proc_usage(p)[1] for name, p in pids.items()}


def cpu_per(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, str]:
    """Each process's CPU between two readings, in ms per item of ``n``: where the machine's time went."""
    return {name: f"{(after[name] - before[name]) / n * 1000:.1f}" for name in after}


class Pauses:
    """The bench's own garbage collections, as they happen: while one runs, its event loop stops, and every Job its
    watch sees then is timed late (a pause of 150 ms at 20 applies a second adds up to 150 ms to three of them)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seen: list[tuple[float, float]] = []  # (monotonic start, seconds)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.monotonic()
        else:
            self.seen.append((self.started, time.monotonic() - self.started))

    def during(self, since: float, until: float) -> str:
        """The collections that started in [since, until) (monotonic): how many, their total and longest, in ms."""
        took = [s for at, s in self.seen if since <= at < until]
        return f"{len(took)}, total {sum(took) * 1000:.0f} ms, longest {max(took, default=0) * 1000:.1f} ms"


class Request(NamedTuple):
    """One request of the audit log, as little as the bench reads of it: thousands of parsed audit events held as
    dicts made the bench's own garbage collections long enough to stall its watch (Pauses)."""

    user: str
    verb: str
    what: str  # resource, or resource/subresource
    namespace: str
    name: str
    received: float  # wall-clock seconds
    completed: float


class Audit:
    """The API server's audit log: every request of the implementations' ServiceAccounts, once complete."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.requests = path, 0, []  # type: tuple[Path, int, list[Request]]

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as f:
            f.seek(self.offset)
            for line in f:
                if line.endswith("\n"):
                    e = json.loads(line)
                    ref = e.get("objectRef") or {}
                    what = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                    self.requests.append(Request(
                        e["user"]["username"], e["verb"], what, ref.get("namespace", ""), ref.get("name", ""),
                        _seconds(e["requestReceivedTimestamp"]), _seconds(e["stageTimestamp"])))
            self.offset = f.tell()

    def _of(self, who: str, since: float, until: float) -> list[Request]:
        """``who``'s requests (operator/reactor) completed in [since, until) (wall-clock seconds), watches aside."""
        self.read()
        user = f"system:serviceaccount:{NS}:{who}"
        return [r for r in self.requests if r.user == user and r.verb != "watch" and since <= r.completed < until]

    def count(self, who: str, since: float, until: float, writes: bool = False) -> int:
        """How many requests ``_of`` finds; ``writes``: reads (get, list) aside."""
        return sum(1 for r in self._of(who, since, until) if not (writes and r.verb in ("get", "list")))

    def _by_kind(self, who: str, since: float, until: float) -> dict[str, list[float]]:
        """The requests counted by ``count``, by verb and resource: each one's time in the API server (received to
        completed, APF's queueing included)."""
        out: dict[str, list[float]] = {}
        for r in self._of(who, since, until):
            out.setdefault(f"{r.verb} {r.what}", []).append(r.completed - r.received)
        return out

    def creates(self, who: str, ns: str, resource: str) -> dict[str, tuple[float, float]]:
        """``who``'s creates of ``resource`` in ``ns`` by name: (received, completed) in wall-clock seconds."""
        self.read()
        user = f"system:serviceaccount:{NS}:{who}"
        return {r.name: (r.received, r.completed) for r in self.requests
                if r.user == user and r.verb == "create" and r.what == resource and r.namespace == ns and r.name}

    def breakdown(self, who: str, since: float, until: float) -> dict[str, int]:
        """How many, by verb and resource (where the requests go)."""
        return {k: len(v) for k, v in self._by_kind(who, since, until).items()}

    def latency(self, who: str, since: float, until: float) -> dict[str, str]:
        """Their time in the API server, p50/p99 in ms by verb and resource: where a slow transition waits on the API
        server, not on the operator."""
        return {k: f"{pct(v, 0.5) * 1000:.0f}/{pct(v, 0.99) * 1000:.0f}"
                for k, v in self._by_kind(who, since, until).items()}


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Api:
    """The bench's own client (the cluster admin): creates, status patches, and a watch of the Jobs."""

    def __init__(self, plane: ControlPlane, session: aiohttp.ClientSession) -> None:
        self.base, self.session = plane.server, session
        self.headers = {"Authorization": f"Bearer {plane.admin_token}"}

    async def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json",
                   params: dict[str, str] | None = None) -> Any:
        async with self.session.request(method, self.base + path, json=None if ctype != "application/json" else body,
                                        data=json.dumps(body) if ctype != "application/json" else None,
                                        params=params, headers={**self.headers, "Content-Type": ctype}) as r:
            payload = await r.json(content_type=None)
            if r.status >= 400 and r.status != 409:
                raise RuntimeError(f"{method} {path}: {r.status} {payload}")
            return payload

    async def delete_namespace(self, ns: str, timeout: float) -> float:
        """Delete a namespace and wait until the namespace controller has removed all it held; the seconds it took."""
        started = time.monotonic()
        await self.call("DELETE", f"/api/v1/namespaces/{ns}")
        while True:
            async with self.session.get(f"{self.base}/api/v1/namespaces/{ns}", headers=self.headers) as r:
                if r.status == 404:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"namespace {ns} still there after {timeout:.0f} s")
            await asyncio.sleep(1)

    async def watch_jobs(self, on_event: Callable[[str, dict[str, Any]], None]) -> None:
        """Every event of our Jobs, for as long as the bench runs: bookmarks keep the resourceVersion fresh, and a
        410 (compacted) lists again, replaying what the list holds as ADDED."""
        rv = ""
        while True:
            if not rv:
                rv = await self._list_jobs(on_event)
            params = {"watch": "true", "labelSelector": MANAGED, "resourceVersion": rv, "allowWatchBookmarks": "true"}
            async with self.session.get(self.base + "/apis/batch/v1/jobs", params=params, headers=self.headers,
                                        timeout=aiohttp.ClientTimeout(total=None)) as r:
                async for line in r.content:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        rv = ""
                        break
                    rv = event["object"]["metadata"].get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], event["object"])

    async def _list_jobs(self, on_event: Callable[[str, dict[str, Any]], None]) -> str:
        params = {"labelSelector": MANAGED, "limit": "500"}
        while True:
            page = await self.call("GET", "/apis/batch/v1/jobs", params=params)
            for job in page["items"]:
                on_event("ADDED", job)
            if not page["metadata"].get("continue"):
                return str(page["metadata"]["resourceVersion"])
            params["continue"] = page["metadata"]["continue"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def loop_lag(kind: str, port: int) -> dict[float, float]:
    """The operator's im2txt_event_loop_lag_seconds histogram: cumulative count by bucket bound ({}: the reactor)."""
    if kind != "operator":
        return {}
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    out = {}
    for line in text.splitlines():
        if line.startswith("im2txt_event_loop_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(bound)] = float(line.rsplit(" ", 1)[1])
    return out


def lag_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, str]:
    """p50, p99 and max of the lag between two scrapes, as the bucket bound each falls under."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0

    def under(q: float) -> str:
        for bound, count in zip(bounds, counts, strict=True):
            if count >= q * total:
                return f"<={bound * 1000:g}" if math.isfinite(bound) else ">5000"
        return "?"

    return {"p50": under(0.5), "p99": under(0.99), "max": under(1.0), "samples": f"{total:.0f}"}


async def paced(items: list[Any], rate: float, work: Callable[[Any], Awaitable[None]]) -> None:
    """``work(item)`` for each item, started at ``rate`` per second (concurrent, so a slow answer delays nothing)."""
    start, tasks = time.monotonic(), []
    for i, item in enumerate(items):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(work(item)))
    await asyncio.gather(*tasks)


async def wait_until(check: Callable[[], bool], timeout: float, what: str,
                     where: Callable[[], str] = lambda: "") -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what} {where()}".rstrip())
        await asyncio.sleep(0.05)


# Extra spec fields of every training (--no-evaluation: {"evaluation": {"enabled": False}}, the operator's core
# alone, as it was before the evaluation Deployment came with every training).
EXTRA_SPEC: dict[str, Any] = {}


def training(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "metadata": {"name": name},
            "spec": {"dataPath": "ufile://data/coco/", "outputPath": f"ufile://out/{ns}/{name}/",
                     "credentialsSecret": "ufile-keys", "numberOfSteps": 100, "stage2NumberOfSteps": 300,
                     "gpus": 0, "export": False, **EXTRA_SPEC}}


# What the containers of a stage that ended well leave as their termination messages (the trainer's, the sync
# sidecar's; the bench's trainings train 100 steps): the operator reads the stage's end from them.
ENDED_WELL = {"trainer": "trainer: reached global step 100: loss = 2.1234 (0.500 sec/step)\n",
              "sync": "sync: published checkpoint model.ckpt-100\n"}


async def finish_pod(api: Api, ns: str, pod: dict[str, Any]) -> None:
    """The kubelet's part: the pod ran and succeeded (its containers terminated with exit code 0)."""
    spec = pod["spec"]

    def ended(name: str) -> dict[str, Any]:
        done = {"terminated": {"exitCode": 0, "reason": "Completed", "message": ENDED_WELL.get(name, "")}}
        return {"name": name, "state": done, "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                "started": False}

    await api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/status", {"status": {
        "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}],
        "initContainerStatuses": [ended(c["name"]) for c in spec.get("initContainers", [])],
        "containerStatuses": [ended(c["name"]) for c in spec["containers"]]}},
        ctype="application/merge-patch+json")


async def pods_of_stage(api: Api, ns: str, stage: int) -> list[dict[str, Any]]:
    """The stage's pods, as much of each as finish_pod reads: a thousand whole pods, held while the bench finishes
    them, made one of its garbage collections 100 ms long (Pauses)."""
    items: list[dict[str, Any]] = []
    params = {"labelSelector": f"im2txt.dev/stage={stage}", "limit": "500"}
    while True:
        page = await api.call("GET", f"/api/v1/namespaces/{ns}/pods", params=params)
        items += [{"metadata": {"name": pod["metadata"]["name"]},
                   "spec": {part: [{"name": c["name"]} for c in pod["spec"].get(part) or ()]
                            for part in ("initContainers", "containers")}} for pod in page["items"]]
        if not page["metadata"].get("continue"):
            return items
        params["continue"] = page["metadata"]["continue"]


async def noise(api: Api, count: int) -> None:
    """``count`` unrelated Jobs (with their pods, made by the real Job controller) in their own namespace."""
    if not count:
        return
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "noise"}})
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": {"app": "other"}},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}}
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await api.call("POST", "/apis/batch/v1/namespaces/noise/jobs",
                           {**job, "metadata": {**job["metadata"], "name": f"other-{i:05d}"}})

    await asyncio.gather(*(one(i) for i in range(count)))
    end = time.monotonic() + 900
    while await count_pods(api, "noise") < count:  # the Job controller made their pods: the cluster is settled
        if time.monotonic() > end:
            raise TimeoutError("the unrelated Jobs' pods")
        await asyncio.sleep(5)


async def count_pods(api: Api, ns: str) -> int:
    n, params = 0, {"limit": "1000"}
    while True:
        page = await api.call("GET", f"/api/v1/namespaces/{ns}/pods", params=params)
        n += len(page["items"])
        if not page["metadata"].get("continue"):
            return n
        params["continue"] = page["metadata"]["continue"]


async def run_one(plane: ControlPlane, api: Api, audit: Audit, pauses: Pauses, kind: str, n: int, rate: float,
                  steady_s: float, jobs_seen: dict[str, float], completed: dict[str, float], tmp: Path,
                  logs: Path) -> dict[str, float]:
    ns = f"{kind}-{n}"
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    token = plane.kubectl("create", "token", kind, "-n", NS, "--duration=6h").stdout.strip()
    config = tmp / f"{kind}.kubeconfig"
    config.write_text(json.dumps(kubeconfig(plane.server, plane.pki / "ca.crt", token, kind)))
    env = {**os.environ, "KUBECONFIG": str(config), "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("operator", "trainer"))}
    metrics_port = free_port()
    if kind == "operator":
        cmd = [sys.executable, "-m", "im2txt_operator", "run", "--namespace", ns, "--liveness=",
               f"--metrics-port={metrics_port}",
               *os.environ.get("BENCH_OPERATOR_FLAGS", "").split()]  # e.g. "--kube-qps 200": what a flag changes
        if os.environ.get("BENCH_PROFILE"):  # e.g. BENCH_PROFILE=/tmp/operator.prof: where the time goes
            cmd[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    else:
        cmd = [sys.executable, str(HERE / "operator_reactor.py"), plane.server, str(config), ns,
               *(["--writes"] if kind == "reactor-writes" else [])]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=open(logs / f"{kind}-{n}.log", "wb"))  # noqa: SIM115
    try:
        await api.call("POST", f"/apis/im2txt.dev/v1alpha1/namespaces/{ns}/im2txttrainings",
                       training("warmup", ns))
        await wait_until(lambda: f"{ns}/warmup-stage1" in jobs_seen, 180, "the warm-up's Job")
        lag_before = await loop_lag(kind, metrics_port)
        names = [f"t{i:05d}" for i in range(n)]
        created: dict[str, float] = {}
        created_wall: dict[str, float] = {}  # the same moments, wall-clock (audit log times)

        async def create(name: str) -> None:
            await api.call("POST", f"/apis/im2txt.dev/v1alpha1/namespaces/{ns}/im2txttrainings", training(name, ns))
            created[name], created_wall[name] = time.monotonic(), time.time()

        a0, m0, cpu0 = time.time(), time.monotonic(), cpu_by_process(plane, proc.pid)
        await paced(names, rate, create)
        await wait_until(lambda: all(f"{ns}/{m}-stage1" in jobs_seen for m in names), 120 + n / 10, "stage-1 Jobs")
        print(f"{kind} N={n}: the bench's own GC pauses during the applies: {pauses.during(m0, time.monotonic())}",
              flush=True)
        print(f"{kind} N={n}: CPU ms per apply, by process: {cpu_per(cpu0, cpu_by_process(plane, proc.pid), n)}",
              flush=True)
        print(f"{kind} N={n}: requests during the applies: {audit.breakdown(kind, a0, time.time())}", flush=True)
        print(f"{kind} N={n}: their time in the API server, p50/p99 ms: {audit.latency(kind, a0, time.time())}",
              flush=True)
        to_job = [jobs_seen[f"{ns}/{m}-stage1"] - created[m] for m in names]
        split = apply_split(audit.creates(kind, ns, "jobs"), names, created, created_wall, jobs_seen, ns)
        print(f"{kind} N={n}: where apply goes, p50/p99 ms: {split}", flush=True)
        lag_applied = await loop_lag(kind, metrics_port)
        if lag_applied:  # the operator's own event loop: how late it ran, while the trainings came
            print(f"{kind} N={n}: its event loop's lag during the applies (ms, bucket bounds): "
                  f"{lag_quantiles(lag_before, lag_applied)}", flush=True)
        pods: list[dict[str, Any]] = []

        async def listed() -> bool:  # every training's stage-1 pod (the warm-up's aside)
            pods[:] = [p for p in await pods_of_stage(api, ns, 1) if not p["metadata"]["name"].startswith("warmup")]
            return len(pods) >= n

        end = time.monotonic() + 120 + n / 10
        while not await listed():
            if time.monotonic() > end:
                raise TimeoutError("stage-1 pods")
            await asyncio.sleep(1)
        t0, m0 = time.time(), time.monotonic()
        await paced(pods, rate, lambda pod: finish_pod(api, ns, pod))
        await wait_until(lambda: all(f"{ns}/{m}-stage2" in jobs_seen for m in names), 120 + n / 10,
                         "stage-2 Jobs", lambda: f"{sum(f'{ns}/{m}-stage2' in jobs_seen for m in names)} of {n} made")
        print(f"{kind} N={n}: the bench's own GC pauses during the transitions: "
              f"{pauses.during(m0, time.monotonic())}", flush=True)
        to_next = [jobs_seen[f"{ns}/{m}-stage2"] - completed[f"{ns}/{m}-stage1"] for m in names
                   if f"{ns}/{m}-stage1" in completed]
        # The transitions' last writes (a loaded operator works through its backlog, e.g. the status patch each Job
        # controller's startTime brings) belong to them: done when nothing was written for 5 s (120 s at most).
        await asyncio.sleep(5)
        quiet_by = time.time() + 120
        while time.time() < quiet_by and audit.count(kind, time.time() - 5, time.time(), writes=True):
            await asyncio.sleep(1)
        per_transition = audit.count(kind, t0, time.time()) / n
        writes_per_transition = audit.count(kind, t0, time.time(), writes=True) / n
        print(f"{kind} N={n}: requests during the transitions: {audit.breakdown(kind, t0, time.time())}", flush=True)
        print(f"{kind} N={n}: their time in the API server, p50/p99 ms: {audit.latency(kind, t0, time.time())}",
              flush=True)
        if lag_applied:
            print(f"{kind} N={n}: its event loop's lag during the transitions (ms, bucket bounds): "
                  f"{lag_quantiles(lag_applied, await loop_lag(kind, metrics_port))}", flush=True)
        _, cpu_before = proc_usage(proc.pid)
        s0 = time.time()
        await asyncio.sleep(steady_s)  # every training Running (stage 2), nothing changes
        steady = audit.count(kind, s0, time.time()) / steady_s
        print(f"{kind} N={n}: requests at steady state: {audit.breakdown(kind, s0, time.time())}", flush=True)
        rss, cpu = proc_usage(proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    return {"create_p50": pct(to_job, 0.5), "create_p99": pct(to_job, 0.99), "next_p50": pct(to_next, 0.5),
            "next_p99": pct(to_next, 0.99), "requests": per_transition, "writes": writes_per_transition,
            "steady": steady, "rss": rss, "cpu_per_1000": cpu / (n + 1) * 1000, "steady_cpu": cpu - cpu_before}


def apply_split(creates: dict[str, tuple[float, float]], names: list[str], created: dict[str, float],
                created_wall: dict[str, float], jobs_seen: dict[str, float], ns: str) -> dict[str, str]:
    """Each apply in three parts, from the audit log's times of the stage-1 Job's create: the training's create
    returning to that request reaching the API server (the watch event, then the implementation's own work and
    queues), the request inside the API server, and its answer to the bench's watch showing the Job. Wall-clock
    times on one host; the bench's watch times are monotonic, so they are set against the create's return."""
    parts: dict[str, list[float]] = {"react": [], "server": [], "seen": []}
    for m in names:
        if (c := creates.get(f"{m}-stage1")) is None:
            continue
        received, done = c
        parts["react"].append(received - created_wall[m])
        parts["server"].append(done - received)
        parts["seen"].append(jobs_seen[f"{ns}/{m}-stage1"] - created[m] - (done - created_wall[m]))
    return {k: f"{pct(v, 0.5) * 1000:.1f}/{pct(v, 0.99) * 1000:.1f}" for k, v in parts.items()}


async def clear(api: Api, ns: str, n: int) -> None:
    """Each run starts on the cluster the first one found (the unrelated Jobs alone): the one before leaves N
    trainings, 2N Jobs and their pods (the operator also N evaluation Deployments with their ReplicaSets and pods),
    which keep the Job, ReplicaSet and garbage collectors and the API server busy while the next run is measured."""
    took = await api.delete_namespace(ns, 600 + n / 5)  # reactor-1000 took 192 s here
    print(f"{ns}: deleted in {took:.0f} s", flush=True)


KEYS = ("create_p50", "create_p99", "next_p50", "next_p99", "requests", "writes", "steady", "rss", "cpu_per_1000",
        "steady_cpu")


async def main(sizes: list[int], rate: float, noise_jobs: int, steady_s: float, logs: Path,
               reactor: bool = True, writing: bool = False) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
        plane = ControlPlane(find_assets(), tmp / "plane", apiserver_args=[
            f"--audit-policy-file={tmp / 'audit-policy.json'}", f"--audit-log-path={tmp / 'audit.log'}",
            "--audit-log-maxsize=0", "--max-requests-inflight=800", "--max-mutating-requests-inflight=400"],
            controller_manager_args=["--kube-api-qps=300", "--kube-api-burst=600"])
        plane.start()
        rows = []
        try:
            plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "im2txt.dev_im2txttrainings.yaml"))
            plane.kubectl("wait", "--for=condition=Established", "crd/im2txttrainings.im2txt.dev")
            plane.kubectl("create", "namespace", NS)
            for who in WHO:
                plane.kubectl("create", "serviceaccount", who, "-n", NS)
                plane.kubectl("create", "clusterrolebinding", f"bench-{who}", "--clusterrole=cluster-admin",
                              f"--serviceaccount={NS}:{who}")
            audit, pauses = Audit(tmp / "audit.log"), Pauses()
            context = ssl.create_default_context(cafile=str(plane.pki / "ca.crt"))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=64)) as session:
                api = Api(plane, session)
                started = time.monotonic()
                await noise(api, noise_jobs)
                print(f"{noise_jobs} unrelated Jobs and their pods made in {time.monotonic() - started:.0f} s",
                      flush=True)
                gc.collect()
                gc.freeze()  # what the bench holds from here on is never scanned again: shorter pauses (Pauses)
                jobs_seen: dict[str, float] = {}
                completed: dict[str, float] = {}

                def on_job(kind: str, job: dict[str, Any]) -> None:
                    key = f"{job['metadata']['namespace']}/{job['metadata']['name']}"
                    now = time.monotonic()
                    if kind == "ADDED":
                        jobs_seen.setdefault(key, now)
                    if any(c["type"] == "Complete" and c["status"] == "True"
                           for c in (job.get("status") or {}).get("conditions") or ()):
                        completed.setdefault(key, now)

                watcher = asyncio.create_task(api.watch_jobs(on_job))
                watcher.add_done_callback(lambda t: t.cancelled() or print(f"the Jobs watch ended: {t.exception()!r}",
                                                                            flush=True))
                try:
                    for i, n in enumerate(sizes):
                        base = await run_one(plane, api, audit, pauses, "reactor", n, rate, steady_s, jobs_seen,
                                             completed, tmp, logs) if reactor else dict.fromkeys(KEYS, math.nan)
                        if reactor:
                            await clear(api, f"reactor-{n}", n)
                        floor = None
                        if writing:  # the reactor that also writes status and an Event: the operator's writes
                            floor = await run_one(plane, api, audit, pauses, "reactor-writes", n, rate, steady_s,
                                                  jobs_seen, completed, tmp, logs)
                            await clear(api, f"reactor-writes-{n}", n)
                        op = await run_one(plane, api, audit, pauses, "operator", n, rate, steady_s, jobs_seen,
                                           completed, tmp, logs)
                        if i + 1 < len(sizes):
                            await clear(api, f"operator-{n}", n)
                        rows.append((n, base, op, floor))
                        report(rows[-1:], rate, noise_jobs)  # each size as soon as it is measured
                finally:
                    watcher.cancel()
        finally:
            plane.stop()


Row = tuple[int, dict[str, float], dict[str, float], dict[str, float] | None]  # N, reactor, operator, reactor-writes


def _line(n: int, label: str, r: dict[str, float]) -> str:
    ms = 1000.0
    return (f"{n:>5} {label:<14} {r['create_p50'] * ms:>9.1f} {r['create_p99'] * ms:>9.1f} "
            f"{r['next_p50'] * ms:>8.1f} {r['next_p99'] * ms:>8.1f} {r['requests']:>9.2f} {r['writes']:>8.2f} "
            f"{r['steady']:>10.2f} {r['rss']:>7.1f} {r['cpu_per_1000']:>8.1f}")


def _ratio(n: int, label: str, op: dict[str, float], base: dict[str, float]) -> str:
    ratio = {k: op[k] / base[k] if base[k] else float("nan") for k in op}
    return (f"{n:>5} {label:<14} {ratio['create_p50']:>9.2f} {ratio['create_p99']:>9.2f} "
            f"{ratio['next_p50']:>8.2f} {ratio['next_p99']:>8.2f} {ratio['requests']:>9.2f} {ratio['writes']:>8.2f} "
            f"{'':>10} {ratio['rss']:>7.2f} {ratio['cpu_per_1000']:>8.2f}")


def report(rows: list[Row], rate: float, noise_jobs: int) -> None:
    load = os.getloadavg()
    print(f"\noperator benchmark on the real API server (kube-apiserver + kube-controller-manager, {noise_jobs} "
          f"unrelated Jobs; trainings created and stage-1 pods finished at {rate:g}/s; times in ms; "
          f"ratio = operator / raw-watch reactor; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    header = (f"{'N':>5} {'impl':<14} {'apply p50':>9} {'apply p99':>9} {'next p50':>8} {'next p99':>8} "
              f"{'req/trans':>9} {'wr/trans':>8} {'steady r/s':>10} {'RSS MiB':>7} {'CPU s/1k':>8}")
    print(header)
    print("-" * len(header))
    for n, base, op, floor in rows:
        print(_line(n, "reactor", base))
        if floor is not None:
            print(_line(n, "reactor-writes", floor))
        print(_line(n, "operator", op))
        print(_ratio(n, "ratio", op, base))
        if floor is not None:  # against the floor that makes the same writes (not a goal: what the writes cost)
            print(_ratio(n, "ratio (writes)", op, floor))
    print()
    for n, base, op, _floor in rows:
        checks = [("apply p99 <= 1.5x reactor", op["create_p99"] <= 1.5 * base["create_p99"])] \
            if not math.isnan(base["create_p99"]) else []
        checks.append(("steady requests <= progress budget (20/s)", op["steady"] <= 20.0))
        if n >= 1000:
            checks += [("apply p99 < 1 s", op["create_p99"] < 1.0), ("stage advance p99 < 1 s", op["next_p99"] < 1.0)]
        if n >= 5000:
            checks.append(("RSS < 250 MiB", op["rss"] < 250))
        print(f"N={n}: " + "; ".join(f"{what}: {'OK' if ok else 'MISSED'}" for what, ok in checks))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="trainings per run (default: 100 and 1000)")
    parser.add_argument("--rate", type=float, default=20.0, help="trainings created (and pods finished) per second")
    parser.add_argument("--noise", type=int, default=10_000, help="unrelated Jobs in the cluster (default 10000)")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of steady state measured (default 60)")
    parser.add_argument("--no-evaluation", action="store_true",
                        help="trainings without the evaluation Deployment (on by default): the operator's own cost")
    parser.add_argument("--no-reactor", action="store_true",
                        help="measure the operator alone (e.g. RSS and steady requests at N = 5,000; no ratios)")
    parser.add_argument("--writing-reactor", action="store_true",
                        help="also run the reactor that writes status and an Event with each Job (operator_reactor.py "
                             "--writes): how much of the gap to the bare reactor is those writes")
    parser.add_argument("--logs", type=Path, default=ROOT / ".bench" / "operator",
                        help="where the operator's and the reactor's logs go (default .bench/operator)")
    args = parser.parse_args()
    if args.no_evaluation:
        EXTRA_SPEC["evaluation"] = {"enabled": False}
    asyncio.run(main(args.n or [100, 1000], args.rate, args.noise, args.steady, args.logs, not args.no_reactor,
                     args.writing_reactor))
