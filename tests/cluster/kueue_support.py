"""A real Kueue beside a control plane of the real-API tier: its manager (built by tools/kueue/build.sh from the Go
module) out of cluster, its CRDs applied, its Job and Kueue-API webhooks registered by URL on loopback with a CA
made here; and what a test needs around it: queues, the Workload of a Job, and a watch that counts Job updates
and pods.

Kueue runs as a cluster admin would configure it: integrations batch/job only, jobs without the queue label left
alone (manageJobsWithoutQueueName: false), no leader election, no metrics or health endpoints, the cert-manager-free
path (internalCertManagement off, certificates from certDir).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
import yaml
from cluster_support import Api, ApiError, wait_for
from control_plane import ControlPlane, free_port, make_pki
from go_tools import ROOT, built

BUILD = ROOT / "tools" / "kueue" / "build.sh"
WORKLOADS = "/apis/kueue.x-k8s.io/v1beta2"
# Kueue v0.17 reads a metrics serving certificate from this fixed path whenever internal cert management is off,
# even with metrics off; any valid pair will do. It is written once and left for later runs (it serves nothing).
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
# The webhooks the manager serves with only the batch/job integration: Jobs, and Kueue's own API.
SERVED = ("-batch-v1-job", "-kueue-x-k8s-io-")
JOB_UID = "kueue.x-k8s.io/job-uid"  # the label Kueue puts on a Job's Workload


def build() -> Path:
    """The folder of tools/kueue/build.sh: kueue, crds/, webhook/ (cold: 10-20 min; make test builds it first)."""
    return built(BUILD, "Kueue's manager", timeout=1800)


class Kueue:
    """Kueue's manager for ``plane``; ``start()`` returns once its webhooks answer and its CRDs serve."""

    def __init__(self, folder: Path, plane: ControlPlane, workdir: Path) -> None:
        self.folder, self.plane, self.workdir = folder, plane, workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def logfile(self) -> Path:
        return self.workdir / "kueue.log"

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def _certs(self) -> Path:
        pki = self.workdir / "pki"
        make_pki(pki)  # a CA and a serving certificate for 127.0.0.1
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        shutil.copy(pki / "apiserver.crt", certs / "tls.crt")
        shutil.copy(pki / "apiserver.key", certs / "tls.key")
        if not (METRICS_CERTS / "tls.crt").exists() or not (METRICS_CERTS / "tls.key").exists():
            try:
                METRICS_CERTS.mkdir(parents=True, exist_ok=True)
                shutil.copy(certs / "tls.crt", METRICS_CERTS / "tls.crt")
                shutil.copy(certs / "tls.key", METRICS_CERTS / "tls.key")
            except OSError as e:
                raise RuntimeError(f"Kueue v0.17 needs a certificate pair in {METRICS_CERTS} (run as root, or "
                                   f"write any pair there): {e}") from e
        return pki

    def _config(self) -> Path:
        config = {"apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
                  "namespace": "kueue-system", "manageJobsWithoutQueueName": False,
                  "leaderElection": {"leaderElect": False},
                  "health": {"healthProbeBindAddress": "0"}, "metrics": {"bindAddress": "0"},
                  "webhook": {"host": "127.0.0.1", "port": self.port, "certDir": str(self.workdir / "certs")},
                  "internalCertManagement": {"enable": False},
                  "integrations": {"frameworks": ["batch/job"]}}
        path = self.workdir / "kueue-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _webhooks(self, ca: Path) -> str:
        """Kueue's webhook configurations with each served path as a URL on loopback (no Service in this cluster)."""
        bundle = base64.b64encode(ca.read_bytes()).decode()
        out = []
        for doc in yaml.safe_load_all((self.folder / "webhook" / "manifests.yaml").read_text()):
            if not doc:
                continue
            kept = []
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                if any(s in path for s in SERVED):
                    hook["clientConfig"] = {"url": f"https://127.0.0.1:{self.port}{path}", "caBundle": bundle}
                    kept.append(hook)
            doc["metadata"] = {"name": f"kueue-{doc['kind'].lower()}"}
            doc["webhooks"] = kept
            out.append(doc)
        return yaml.safe_dump_all(out)

    def start(self, timeout: float = 120) -> Kueue:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self._certs()
        plane = self.plane
        plane.kubectl("create", "namespace", "kueue-system")
        plane.kubectl("apply", "--server-side", "-f", str(self.folder / "crds"))
        # The manager builds its indexes at start: every CRD must serve first.
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(self.folder / "crds"))
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.folder / "kueue"), f"--config={self._config()}", "--feature-gates=VisibilityOnDemand=false",
                 "--zap-log-level=info"],
                env={"KUBECONFIG": str(plane.kubeconfig_path), "PATH": "/usr/bin:/bin"}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        plane.kubectl("apply", "--server-side", "-f", "-", input=self._webhooks(pki / "ca.crt"))
        admin = Api(plane)

        def serving() -> bool:  # a ResourceFlavor create goes through Kueue's own webhooks
            assert self.proc is not None and self.proc.poll() is None, f"kueue exited:\n{self.log[-4000:]}"
            try:
                admin.create(f"{WORKLOADS}/resourceflavors", {
                    "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
                    "metadata": {"name": "default-flavor"}})
            except (ApiError, requests.RequestException) as e:  # refused until the webhook server serves
                return isinstance(e, ApiError) and e.status == 409
            return True

        wait_for(serving, timeout=timeout, what="Kueue's webhooks", on_timeout=lambda: self.log[-4000:])
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def queues(admin: Api, ns: str, gpus: int, strategy: str = "StrictFIFO", name: str = "gpu-queue") -> str:
    """A ClusterQueue of ``gpus`` GPUs (and ample cpu and memory) for ``ns`` alone, and its LocalQueue ``name``."""
    admin.create(f"{WORKLOADS}/clusterqueues", {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": ns},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                 "queueingStrategy": strategy,
                 "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [{
                     "name": "default-flavor", "resources": [
                         {"name": "cpu", "nominalQuota": "64"}, {"name": "memory", "nominalQuota": "512Gi"},
                         {"name": "nvidia.com/gpu", "nominalQuota": gpus}]}]}]}})
    admin.create(f"{WORKLOADS}/namespaces/{ns}/localqueues", {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": name},
        "spec": {"clusterQueue": ns}})
    return name


def workloads(admin: Api, ns: str, job: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The Workloads of ``ns``, or of one Job (by the job-uid label Kueue puts on them)."""
    params = {"labelSelector": f"{JOB_UID}={job['metadata']['uid']}"} if job else None
    return admin.request("GET", f"{WORKLOADS}/namespaces/{ns}/workloads", params=params)["items"]


def workload_condition(workload: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (workload.get("status") or {}).get("conditions") or () if c["type"] == type_), {})


def admitted(workload: dict[str, Any]) -> bool:
    return workload_condition(workload, "Admitted").get("status") == "True"


def cluster_queue(admin: Api, ns: str) -> dict[str, Any]:
    return admin.get(f"{WORKLOADS}/clusterqueues/{ns}") or {}


class Watch:
    """Counts, from a real watch, every update of each Job of a namespace (MODIFIED events), each change of its
    spec.suspend and who made it (the last managedFields entry that owns it), and the pods created for it."""

    def __init__(self, admin: Api, ns: str) -> None:
        self.admin, self.ns = admin, ns
        self.updates: Counter[str] = Counter()
        self.flips: dict[str, list[bool]] = {}
        self.pods: Counter[str] = Counter()
        self.started: list[str] = []  # Jobs in the order they were unsuspended (admitted)
        self.errors: list[dict[str, Any]] = []  # ERROR events of the watches (each one watched again)
        self._listed: list[str] = []
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(p, self._job), daemon=True)
                         for p in (admin.jobs(ns),)] + [
            threading.Thread(target=self._run, args=(admin.core(ns, "pods"), self._pod), daemon=True)]

    def __enter__(self) -> Watch:
        for t in self._threads:
            t.start()
        wait_for(lambda: len(self._listed) == len(self._threads), what="the watches")
        return self

    def __exit__(self, *_: object) -> None:
        self._closed = True
        for t in self._threads:
            t.join(10)

    def _run(self, path: str, handle: Any) -> None:
        """List, then watch from the list's resourceVersion; a watch the API server cannot serve yet (its watch
        cache behind: 504 "Too large resource version") is made again from the last version seen."""
        session = requests.Session()  # one per thread; each watch ends on its own (timeoutSeconds), never closed
        session.headers.update(self.admin.session.headers)  # from outside while it reads (that deadlocks in ssl)
        listed = session.get(self.admin.base + path, verify=self.admin.ca, timeout=30).json()
        with self._lock:
            for item in listed["items"]:
                handle("ADDED", item)
        rv = listed["metadata"]["resourceVersion"]
        self._listed.append(path)
        while not self._closed:
            resp = session.get(self.admin.base + path, stream=True, verify=self.admin.ca, timeout=(10, 30),
                               params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "2"})
            try:
                for line in resp.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                        self.errors.append(event)
                        break
                    rv = event["object"]["metadata"]["resourceVersion"]
                    with self._lock:
                        handle(event["type"], event["object"])
            except (requests.RequestException, ValueError):
                pass  # cut: watch again unless closed
            finally:
                resp.close()
            time.sleep(0.2)  # the next watch starts from the last version seen: nothing is missed between

    def _job(self, kind: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        suspend = bool(job["spec"].get("suspend"))
        flips = self.flips.setdefault(name, [])
        if kind == "MODIFIED":
            self.updates[name] += 1
        if kind != "DELETED" and (not flips or flips[-1] != suspend):  # a Job made again under the name continues
            flips.append(suspend)
            if not suspend:
                self.started.append(name)

    def _pod(self, kind: str, pod: dict[str, Any]) -> None:
        if kind == "ADDED":
            self.pods[(pod["metadata"].get("labels") or {}).get("job-name", "")] += 1

    def counts(self, job: str) -> tuple[int, int, list[bool]]:
        """(updates, pods created, the suspend values it went through) of the Job named ``job`` so far."""
        with self._lock:
            return self.updates[job], self.pods[job], list(self.flips.get(job, []))
