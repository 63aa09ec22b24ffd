"""A stand-in for a cluster's Job controller and kubelet, for tests and the demo only.

It plays, on this machine, the part a real cluster plays for the operator's Jobs: for each Job in the API it
creates a Pod object, runs the pod's containers as local processes (init containers in order, native
sidecars alongside, then the main containers, then SIGTERM to the sidecars), and writes the Job's status the
way the Job controller does (active/succeeded/failed, Complete/Failed/Suspended conditions, backoffLimit,
activeDeadlineSeconds, suspend). Production always runs on a real cluster.

Containers share one image here: the project's checkout. Container paths are mapped onto folders: each
volume mount to its volume's folder, and the rest of `/data` (the image's work dir, holding `train.py`) to an
"image" folder, so the Job's command runs unchanged apart from that path mapping.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("im2txt.standin.kubelet")

REPO = Path(__file__).resolve().parents[2]
IMAGE_WORKDIR = "/data"
RESTART_SECONDS = 10  # a Deployment's pod that ended is started again after this long (a kubelet's back-off)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass
class PathMap:
    """Container path -> host path: longest matching mount first, then the image's own files."""

    mounts: dict[str, Path]
    image_root: Path

    def host(self, container_path: str) -> str:
        for mount in sorted(self.mounts, key=len, reverse=True):
            if container_path == mount or container_path.startswith(mount.rstrip("/") + "/"):
                rest = container_path[len(mount.rstrip("/")) :].lstrip("/")
                target = self.mounts[mount] / rest if rest else self.mounts[mount]
                return str(target) + ("/" if container_path.endswith("/") and rest else "")
        if container_path == IMAGE_WORKDIR or container_path.startswith(IMAGE_WORKDIR + "/"):
            return str(self.image_root) + container_path[len(IMAGE_WORKDIR) :]
        return container_path

    def arg(self, arg: str) -> str:
        """Map `/path` and `--flag=/path` (comma-separated lists too); leave everything else alone."""
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            return f"{flag}={self.arg(value)}"
        if arg.startswith("/"):
            return ",".join(self.host(part) for part in arg.split(","))
        return arg


def job_condition(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    now = now_iso()
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": now, "lastTransitionTime": now}


@dataclass
class RunningPod:
    name: str
    namespace: str
    job_uid: str
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    outcome: str | None = None  # "Succeeded" | "Failed" once the pod ends
    reason: str = ""
    waiting: str = ""  # why it is still Pending
    ended: float = 0.0  # time.time() when it ended


class LocalKubelet:
    """Runs the Jobs it finds in the API as local processes until `stop()` is called, and each Deployment's one pod
    (the evaluation, TensorBoard), started again after it ends as `restartPolicy: Always` would."""

    def __init__(
        self,
        api: client.ApiClient,
        workdir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        poll_seconds: float = 0.5,
        publish_log: Callable[[str, str, str, str], None] | None = None,
    ) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.workdir = workdir
        self.extra_env = dict(extra_env or {})
        self.poll_seconds = poll_seconds
        # A real kubelet serves container logs itself; the API stand-in gets them pushed (namespace, pod,
        # container, text) so `pods/{name}/log` answers as on a cluster.
        self.publish_log = publish_log
        self._published: dict[Path, int] = {}
        self.pods: dict[str, RunningPod] = {}  # by job uid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.image_root = self._make_image()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> LocalKubelet:
        self._thread = threading.Thread(target=self._loop, name="local-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for pod in list(self.pods.values()):
            self._terminate(pod, grace=5)
        if self._thread:
            self._thread.join(timeout=15)

    def __enter__(self) -> LocalKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self, namespace: str, pod: str, container: str) -> str:
        path = self.workdir / "pods" / namespace / pod / "logs" / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _publish_logs(self, tail_bytes: int = 64 * 1024) -> None:
        if self.publish_log is None:
            return
        for pod in self.pods.values():
            for path in (pod.folder / "logs").glob("*.log"):
                size = path.stat().st_size
                if self._published.get(path) == size:
                    continue
                self._published[path] = size
                with path.open("rb") as f:
                    f.seek(max(0, size - tail_bytes))
                    text = f.read().decode(errors="replace")
                self.publish_log(pod.namespace, pod.name, path.stem, text)

    # -- the image ---------------------------------------------------------------------------------------
    def _make_image(self) -> Path:
        """The trainer image's /data: just `train.py`, as in the real image."""
        root = self.workdir / "image"
        root.mkdir(parents=True, exist_ok=True)
        target = root / "train.py"
        if not target.exists():
            shutil.copy2(REPO / "trainer" / "train.py", target)
            target.chmod(0o755)
        return root

    # -- the Job controller's part ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = self.batch.list_job_for_all_namespaces().items
                seen = set()
                for job in jobs:
                    seen.add(job.metadata.uid)
                    self._reconcile(job)
                for deployment in self.apps.list_deployment_for_all_namespaces().items:
                    seen.add(deployment.metadata.uid)
                    self._keep_running(deployment)
                for uid in [u for u in self.pods if u not in seen]:  # Job deleted: so are its pods
                    self._terminate(self.pods.pop(uid), grace=5)
                self._publish_logs()
            except Exception:  # a stand-in keeps going, as a kubelet would
                log.exception("local kubelet loop")
            self._stop.wait(self.poll_seconds)

    def _reconcile(self, job: client.V1Job) -> None:
        status = job.status or client.V1JobStatus()
        conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"}
        if "Complete" in conditions or "Failed" in conditions:
            return
        uid = job.metadata.uid
        pod = self.pods.get(uid)
        if job.spec.suspend:
            if pod:
                self._terminate(self.pods.pop(uid), grace=job.spec.template.spec.termination_grace_period_seconds)
            if "Suspended" not in conditions:
                self._patch_job(job, {"active": 0, "ready": 0, "startTime": None, "conditions": self._conds(
                    status, job_condition("Suspended", "JobSuspended", "Job suspended"))})
            return
        if "Suspended" in conditions:  # resumed
            resumed = [c for c in self._raw_conditions(status) if c["type"] != "Suspended"]
            resumed.append({**job_condition("Suspended", "JobResumed", "Job resumed"), "status": "False"})
            self._patch_job(job, {"conditions": resumed, "startTime": now_iso()})
            return
        if not status.start_time:
            self._patch_job(job, {"startTime": now_iso()})
            return
        deadline = job.spec.active_deadline_seconds
        if deadline and time.time() - parse_iso(_iso(status.start_time)) > deadline:
            if pod:
                self._terminate(self.pods.pop(uid), grace=5)
            self._fail(job, status, "DeadlineExceeded", "Job was active longer than specified deadline")
            return
        if pod is None:
            self.pods[uid] = self._start_pod(job)
            self._patch_job(job, {"active": 1})
            return
        if pod.outcome is None:
            return
        self.pods.pop(uid)
        if pod.outcome == "Succeeded":
            conds = self._conds(status, job_condition("SuccessCriteriaMet", "CompletionsReached",
                                                       "Reached expected number of succeeded pods"))
            conds.append(job_condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"))
            self._patch_job(job, {"active": 0, "ready": 0, "succeeded": (status.succeeded or 0) + 1,
                                  "completionTime": now_iso(), "conditions": conds})
            return
        failed = (status.failed or 0) + 1
        self._patch_job(job, {"active": 0, "ready": 0, "failed": failed})
        if failed > (job.spec.backoff_limit if job.spec.backoff_limit is not None else 6):
            status.failed = failed
            self._fail(job, status, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    def _fail(self, job: client.V1Job, status: client.V1JobStatus, reason: str, message: str) -> None:
        conds = self._conds(status, job_condition("FailureTarget", reason, message))
        conds.append(job_condition("Failed", reason, message))
        self._patch_job(job, {"active": 0, "ready": 0, "conditions": conds})

    @staticmethod
    def _raw_conditions(status: client.V1JobStatus) -> list[dict[str, Any]]:
        return [client.ApiClient().sanitize_for_serialization(c) for c in (status.conditions or [])]

    def _conds(self, status: client.V1JobStatus, new: dict[str, Any]) -> list[dict[str, Any]]:
        return [*[c for c in self._raw_conditions(status) if c["type"] != new["type"]], new]

    def _patch_job(self, job: client.V1Job, status: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(job.metadata.name, job.metadata.namespace, {"status": status})

    # -- the Deployment and ReplicaSet controllers' part: one pod, restarted -----------------------------------
    def _keep_running(self, deployment: client.V1Deployment) -> None:
        uid = deployment.metadata.uid
        pod = self.pods.get(uid)
        if pod is not None and (pod.outcome is None or time.time() - pod.ended < RESTART_SECONDS):
            return
        if pod is not None:
            self._terminate(self.pods.pop(uid), grace=5)
        self.pods[uid] = self._start_pod(deployment, kind="Deployment")

    # -- the kubelet's part ------------------------------------------------------------------------------
    def _start_pod(self, job: client.V1Job | client.V1Deployment, kind: str = "Job") -> RunningPod:
        ns, job_name = job.metadata.namespace, job.metadata.name
        name = f"{job_name}-{secrets.token_hex(3)[:5]}"
        template = client.ApiClient().sanitize_for_serialization(job.spec.template)
        labels = dict(template.get("metadata", {}).get("labels") or {})
        if kind == "Job":
            labels |= {"job-name": job_name, "batch.kubernetes.io/job-name": job_name,
                       "controller-uid": job.metadata.uid, "batch.kubernetes.io/controller-uid": job.metadata.uid}
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                             "creationTimestamp": now_iso(),
                             "ownerReferences": [{"apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
                                                  "kind": kind, "name": job_name,
                                                  "uid": job.metadata.uid, "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "spec": template["spec"], "status": {"phase": "Pending"}}
        self.core.create_namespaced_pod(ns, body)
        pod = RunningPod(name=name, namespace=ns, job_uid=job.metadata.uid,
                         folder=self.workdir / "pods" / ns / name)
        pod.thread = threading.Thread(target=self._run_pod, args=(pod, template["spec"]),
                                      name=f"pod-{name}", daemon=True)
        pod.thread.start()
        return pod

    def _run_pod(self, pod: RunningPod, spec: dict[str, Any]) -> None:
        try:
            paths = self._volumes(pod, spec)
            envs = self._wait_for_env(pod, spec)
            if envs is None:
                return
            self._set_pod_phase(pod, "Running")
            sidecars: list[subprocess.Popen[bytes]] = []
            for container in spec.get("initContainers") or []:
                if pod.stop.is_set():
                    break
                proc = self._spawn(pod, container, paths, envs)
                if container.get("restartPolicy") == "Always":
                    sidecars.append(proc)
                    continue
                if proc.wait() != 0:
                    pod.reason = f"init container {container['name']} exited {proc.returncode}"
                    break
            ok = not pod.reason and not pod.stop.is_set()
            if ok:
                mains = [self._spawn(pod, c, paths, envs) for c in spec["containers"]]
                codes = [p.wait() for p in mains]
                ok = all(code == 0 for code in codes) and not pod.stop.is_set()
                if not ok and not pod.reason:
                    pod.reason = f"containers exited {codes}"
            grace = float(spec.get("terminationGracePeriodSeconds", 30))
            for proc in sidecars:  # the kubelet stops native sidecars once the main containers are done
                _signal(proc, signal.SIGTERM)
            for proc in sidecars:
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal(proc, signal.SIGKILL)
            pod.ended = time.time()
            pod.outcome = "Succeeded" if ok else "Failed"
            self._set_pod_phase(pod, pod.outcome)
        except Exception as exc:
            log.exception("pod %s", pod.name)
            pod.reason = str(exc)
            pod.ended = time.time()
            pod.outcome = "Failed"

    def _volumes(self, pod: RunningPod, spec: dict[str, Any]) -> dict[str, PathMap]:
        """One PathMap per container: its volume mounts plus the image."""
        hosts: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                hosts[volume["name"]] = self.workdir / "pvcs" / pod.namespace / claim
            else:  # emptyDir: new and empty for every pod, as on a node
                hosts[volume["name"]] = pod.folder / "volumes" / volume["name"]
            hosts[volume["name"]].mkdir(parents=True, exist_ok=True)
        maps = {}
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            mounts = {}
            for mount in container.get("volumeMounts") or []:
                path = hosts[mount["name"]] / mount.get("subPath", "")
                path.mkdir(parents=True, exist_ok=True)
                mounts[mount["mountPath"]] = path
            maps[container["name"]] = PathMap(mounts, self.image_root)
        return maps

    def _wait_for_env(self, pod: RunningPod, spec: dict[str, Any]) -> dict[str, dict[str, str]] | None:
        """Like a kubelet, a pod whose Secret or key is missing stays Pending (CreateContainerConfigError)
        and starts once it appears; it does not fail."""
        while not pod.stop.is_set():
            envs: dict[str, dict[str, str]] = {}
            try:
                for kind in ("initContainers", "containers"):
                    for c in spec.get(kind) or []:
                        envs[c["name"]] = self._env(pod, c)
                return envs
            except LookupError as exc:
                if pod.waiting != str(exc):
                    pod.waiting = str(exc)
                    log.warning("pod %s: CreateContainerConfigError: %s", pod.name, exc)
                    # As the kubelet reports it: the container that cannot start waits, with the reason.
                    key = "initContainerStatuses" if kind == "initContainers" else "containerStatuses"
                    self._patch_pod_status(pod, {"phase": "Pending", key: [{
                        "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                        "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                                 "message": str(exc)}}}]})
            pod.stop.wait(2)
        return None

    def _env(self, pod: RunningPod, container: dict[str, Any]) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        # The "image" is this checkout: its trainer/ folder (what the trainer image copies) comes first, not whatever
        # the virtualenv's editable install points at (another worktree sharing the venv).
        env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(pod.folder),
               "PYTHONUNBUFFERED": "1", "HOSTNAME": pod.name, "PYTHONPATH": str(REPO / "trainer"), **self.extra_env}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
            elif ref := (item.get("valueFrom") or {}).get("secretKeyRef"):
                try:
                    secret = self.core.read_namespaced_secret(ref["name"], pod.namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        raise LookupError(f'secret "{ref["name"]}" not found') from None
                    raise
                if ref["key"] not in (secret.data or {}):
                    raise LookupError(f'couldn\'t find key {ref["key"]} in Secret {pod.namespace}/{ref["name"]}')
                env[item["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
        return env

    def _spawn(self, pod: RunningPod, container: dict[str, Any], paths: dict[str, PathMap],
               envs: dict[str, dict[str, str]]) -> subprocess.Popen[bytes]:
        pmap = paths[container["name"]]
        argv = [*container.get("command", []), *container.get("args", [])]
        argv = [pmap.arg(a) for a in argv]
        if argv and argv[0] == "python":  # the image's python is this checkout's virtualenv
            argv[0] = sys.executable
        cwd = pmap.host(container.get("workingDir", IMAGE_WORKDIR))
        logs = pod.folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{container['name']}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(argv, cwd=cwd, env=envs[container["name"]], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        pod.processes.append(proc)
        return proc

    def _terminate(self, pod: RunningPod, grace: float | None) -> None:
        pod.stop.set()
        live = [p for p in pod.processes if p.poll() is None]
        for proc in live:
            _signal(proc, signal.SIGTERM)
        deadline = time.time() + (grace if grace is not None else 30)
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
        if pod.thread:
            pod.thread.join(timeout=10)
        try:
            self.core.delete_namespaced_pod(pod.name, pod.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _set_pod_phase(self, pod: RunningPod, phase: str) -> None:
        status: dict[str, Any] = {"phase": phase}
        if pod.waiting:  # started after all: nothing waits any more
            status |= {"initContainerStatuses": None, "containerStatuses": None}
            pod.waiting = ""
        self._patch_pod_status(pod, status)

    def _patch_pod_status(self, pod: RunningPod, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(pod.name, pod.namespace, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                raise


def _iso(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else str(value)


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
