"""Helpers of the real-API tier: a small REST client, the operator process, the kubelet's part for pods."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from control_plane import ControlPlane, free_port, kubeconfig

ROOT = Path(__file__).resolve().parents[2]
CRD_NAME = "im2txttrainings.im2txt.dev"
TRAININGS = "/apis/im2txt.dev/v1alpha1"
OPERATOR_NS, OPERATOR_SA = "im2txt-system", "im2txt-operator"


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('message', body)}")
        self.status = status
        self.body = body

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.body.get("details") or {}).get("causes") or [])


class Api:
    """Plain JSON over HTTPS with a bearer token: what a test needs, nothing generated."""

    def __init__(self, plane: ControlPlane, token: str | None = None) -> None:
        self.base = plane.server
        self.session = requests.Session()
        self.ca = str(plane.pki / "ca.crt")  # per request: REQUESTS_CA_BUNDLE would override a session's verify
        self.session.headers["Authorization"] = f"Bearer {token or plane.admin_token}"

    def minor(self) -> int:
        """The API server's Kubernetes minor (make test-k8s-versions runs this tier on 1.29 as well as 1.36)."""
        return int("".join(c for c in str(self.request("GET", "/version")["minor"]) if c.isdigit()))

    def needs_admission_policies(self) -> None:
        """Skip, saying why, where the server has no ValidatingAdmissionPolicy v1 (GA in Kubernetes 1.30)."""
        if self.minor() < 30:
            pytest.skip(f"ValidatingAdmissionPolicy v1 needs Kubernetes 1.30+; this API server is 1.{self.minor()}")

    def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        resp = self.session.request(method, self.base + path, data=None if body is None else json.dumps(body),
                                    params=params, headers=headers, timeout=30, verify=self.ca)
        payload = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, payload)
        return payload

    def get(self, path: str, **params: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path, params=params or None)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any], strict: bool = True) -> dict[str, Any]:
        return self.request("POST", path, body, params={"fieldValidation": "Strict"} if strict else None)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str, propagation: str = "Background") -> dict[str, Any]:
        return self.request("DELETE", path, {"propagationPolicy": propagation})

    # -- the objects of these tests
    @staticmethod
    def trainings(ns: str, name: str = "") -> str:
        return f"{TRAININGS}/namespaces/{ns}/im2txttrainings" + (f"/{quote(name)}" if name else "")

    @staticmethod
    def jobs(ns: str, name: str = "") -> str:
        return f"/apis/batch/v1/namespaces/{ns}/jobs" + (f"/{quote(name)}" if name else "")

    @staticmethod
    def core(ns: str, plural: str, name: str = "") -> str:
        return f"/api/v1/namespaces/{ns}/{plural}" + (f"/{quote(name)}" if name else "")

    def training(self, ns: str, name: str) -> dict[str, Any]:
        return self.get(self.trainings(ns, name)) or {}

    def status(self, ns: str, name: str) -> dict[str, Any]:
        return self.training(ns, name).get("status") or {}

    def condition(self, ns: str, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(ns, name).get("conditions") or () if c["type"] == type_), {})

    def job(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.get(self.jobs(ns, name))

    def job_names(self, ns: str) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.request("GET", self.jobs(ns))["items"])

    def pods(self, ns: str, job: str) -> list[dict[str, Any]]:
        return self.request("GET", self.core(ns, "pods"), params={"labelSelector": f"job-name={job}"})["items"]

    def events(self, ns: str, name: str) -> list[dict[str, Any]]:
        items = self.request("GET", self.core(ns, "events"),
                             params={"fieldSelector": f"involvedObject.name={name}"})["items"]
        return sorted(items, key=lambda e: (e.get("firstTimestamp") or "", int(e["metadata"]["resourceVersion"])))

    def event_reasons(self, ns: str, name: str) -> list[str]:
        return [e["reason"] for e in self.events(ns, name)]

    def namespace(self, name: str) -> str:
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def claim(self, ns: str, name: str) -> None:
        self.create(self.core(ns, "persistentvolumeclaims"), {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})

    def new_training(self, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a training. A ufile:// output goes under a folder named after the namespace: ufile paths are global,
        and an earlier test's training, still there while its namespace terminates, would hold the folder (the
        younger training waits: OutputPathInUse)."""
        output = str(spec.get("outputPath") or "")
        if output.startswith("ufile://"):
            bucket, _, rest = output[len("ufile://"):].partition("/")
            spec = {**spec, "outputPath": f"ufile://{bucket}/{ns}/{rest}"}
        return self.create(self.trainings(ns), {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                                "metadata": {"name": name}, "spec": spec})

    def finish_pods(self, ns: str, job: str, phase: str = "Succeeded", exit_code: int | None = None,
                    index: str | None = None) -> list[str]:
        """The kubelet's part: every live pod of the Job (or only the one with completion ``index``) ends with
        ``phase`` (through the status subresource, as a kubelet reports it); the real Job controller takes it from
        there."""
        done = []
        for pod in self.pods(ns, job):
            if pod["status"].get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
                continue
            annotations = pod["metadata"].get("annotations") or {}
            if index is not None and annotations.get("batch.kubernetes.io/job-completion-index") != index:
                continue
            code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                         "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                                  "startedAt": now, "finishedAt": now}}}
                        for c in pod["spec"]["containers"]]
            self.merge_patch(self.core(ns, "pods", pod["metadata"]["name"]) + "/status",
                             {"status": {"phase": phase, "containerStatuses": statuses}})
            done.append(pod["metadata"]["name"])
        return done
    def run_pods(self, ns: str, job: str) -> list[str]:
        """The kubelet's part: every live pod of the Job runs, its containers started and the pod Ready (the Job
        controller then counts it in the Job's status.ready)."""
        done = []
        for pod in self.pods(ns, job):
            if pod["status"].get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
                continue
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "restartCount": 0,
                         "started": True, "state": {"running": {"startedAt": now}}} for c in pod["spec"]["containers"]]
            self.merge_patch(self.core(ns, "pods", pod["metadata"]["name"]) + "/status", {"status": {
                "phase": "Running", "containerStatuses": statuses, "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})
            done.append(pod["metadata"]["name"])
        return done

    def end_pod(self, ns: str, pod: dict[str, Any], phase: str,
                exits: dict[str, tuple[int, str]]) -> None:
        """The kubelet's part for a pod that ended: each named container (init or main) terminated with (exit code,
        termination message), the others as never started; written through the status subresource."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def statuses(kind: str) -> list[dict[str, Any]]:
            out = []
            for c in pod["spec"].get(kind) or ():
                if c["name"] not in exits:
                    state: dict[str, Any] = {"waiting": {"reason": "PodInitializing"}}
                else:
                    code, message = exits[c["name"]]
                    state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                            "message": message, "startedAt": now, "finishedAt": now}}
                out.append({"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                            "restartCount": 0, "state": state})
            return out

        self.merge_patch(self.core(ns, "pods", pod["metadata"]["name"]) + "/status", {"status": {
            "phase": phase, "initContainerStatuses": statuses("initContainers"),
            "containerStatuses": statuses("containers")}})

    def config_error(self, ns: str, pod: dict[str, Any], message: str | None) -> None:
        """The kubelet's part for a pod whose Secret or key is missing: its first init container waits with
        CreateContainerConfigError and the kubelet's message; ``None``: it started (the Secret is there now)."""
        first = pod["spec"]["initContainers"][0]
        state = ({"running": {"startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}} if message is None
                 else {"waiting": {"reason": "CreateContainerConfigError", "message": message}})
        self.merge_patch(self.core(ns, "pods", pod["metadata"]["name"]) + "/status", {"status": {
            "phase": "Pending", "initContainerStatuses": [{"name": first["name"], "image": first["image"],
                                                           "imageID": "", "ready": False, "restartCount": 0,
                                                           "state": state}]}})


def apply_base(plane: ControlPlane) -> str:
    """What a user runs to install the project (make deploy does the same with its image set)."""
    return plane.kubectl("apply", "--server-side", "--field-manager=im2txt-deploy", "-k",
                         str(ROOT / "manifests" / "base")).stdout


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition",
             on_timeout: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(0.2)


def still(predicate: Callable[[], Any], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate()
        time.sleep(0.2)


class OperatorProcess:
    """``python -m im2txt_operator run`` as the operator's own ServiceAccount (the kubeconfig's token)."""

    def __init__(self, kubeconfig: Path, logfile: Path, args: tuple[str, ...] = ("--all-namespaces",),
                 interval: float = 1.0, started: tuple[str, ...] = ("Initial authentication has finished",),
                 liveness: str = "") -> None:
        self.kubeconfig, self.logfile, self.args, self.interval = kubeconfig, logfile, args, interval
        self.liveness = liveness  # the health endpoint's URL (the pod's probes), "" for none
        self.started = started  # any of these in the log: up (a standby of leader election never starts kopf)
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "IM2TXT_PROGRESS_INTERVAL": str(self.interval),
               "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("operator", "trainer"))}
        offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        with self.logfile.open("ab") as log:
            cmd = [sys.executable, "-m", "im2txt_operator", "run", *self.args, f"--liveness={self.liveness}",
                   f"--metrics-port={self.metrics_port}"]
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: any(t in self.log[offset:] for t in self.started) or self.proc.poll() is not None,
                 timeout=30, what="operator start")
        assert self.proc.poll() is None, self.log
        return self

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample of the operator's /metrics, e.g. metric("im2txt_trainings", 'phase="Running"')."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return None

    def samples(self, name: str) -> dict[str, float]:
        """Every sample of one series of the operator's /metrics, by its labels, e.g. samples("im2txt_api_writes_total")
        == {'kind="job"': 2.0}."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return {line.split()[0][len(name):].strip("{}"): float(line.split()[-1]) for line in text.splitlines()
                if line.startswith((name + " ", name + "{"))}

    def reconciled(self, count: int) -> None:
        """Wait for a positive signal that this process acted: ``count`` reconciles done since it started (each of
        the test's trainings, where it serves the test's namespace alone). A check that nothing happens proves
        nothing before that."""
        wait_for(lambda: (self.metric("im2txt_reconciles_total") or 0) >= count, what=f"{count} reconciles")

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Replicas:
    """Operator processes as the Deployment runs them (--leader-elect, each its own identity; with ``probes``, its
    health endpoint on, as the Deployment's probes have it)."""

    _ids = itertools.count(1)

    def __init__(self, kubeconfig: Path, folder: Path) -> None:
        self.kubeconfig, self.folder, self.all = kubeconfig, folder, []  # type: Path, Path, list[OperatorProcess]

    def start(self, identity: str = "", probes: bool = False,
              kubeconfig: Path | None = None) -> tuple[str, OperatorProcess]:
        """``kubeconfig``: this replica's own (e.g. through a fault proxy) instead of the shared one."""
        name = identity or f"replica-{next(self._ids)}"
        op = OperatorProcess(kubeconfig or self.kubeconfig, self.folder / f"{name}-{len(self.all)}.log",
                             args=("--all-namespaces", "--leader-elect", f"--identity={name}",
                                   f"--lease-namespace={OPERATOR_NS}"),
                             started=("became the leader", "standby:"),
                             liveness=f"http://127.0.0.1:{free_port()}/healthz" if probes else "").start()
        self.all.append(op)
        return name, op


@contextlib.contextmanager
def reserved_pool_denied(admin: Api, ns: str, name: str, reason: str = "Invalid",
                         operations: tuple[str, ...] = ("CREATE", "UPDATE")) -> Iterator[int]:
    """A cluster admin's ValidatingAdmissionPolicy ``name`` refuses Jobs of ``ns`` whose pods select pool=reserved,
    answering ``reason`` (Invalid: 422, Forbidden: 403, as admission webhooks do); yields that HTTP status once the
    policy is enforced, and removes it afterwards. Skips where the server has no such API (before 1.30)."""
    admin.needs_admission_policies()
    policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    bindings = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    admin.create(policies, {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["batch"], "apiVersions": ["v1"],
                                                         "operations": list(operations), "resources": ["jobs"]}]},
                 "validations": [{
                     "expression": "!has(object.spec.template.spec.nodeSelector) || "
                                   "object.spec.template.spec.nodeSelector.?pool.orValue('') != 'reserved'",
                     "message": "the reserved pool is for the platform team", "reason": reason}]}})
    admin.create(bindings, {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}})
    probe = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe"},
             "spec": {"template": {"spec": {"restartPolicy": "Never", "nodeSelector": {"pool": "reserved"},
                                            "containers": [{"name": "c", "image": "busybox"}]}}}}
    status = {"Invalid": 422, "Forbidden": 403}[reason]

    def enforced() -> bool:  # policies take effect a moment after they are created
        try:
            admin.request("POST", admin.jobs(ns), probe, params={"dryRun": "All"})
        except ApiError as e:
            return e.status == status
        return False

    wait_for(enforced, timeout=30, what="the policy enforced")
    try:
        yield status
    finally:
        admin.request("DELETE", f"{bindings}/{name}")
        admin.request("DELETE", f"{policies}/{name}")


def kubeconfig_through(proxy_url: str, plane: ControlPlane, own: Path, path: Path) -> Path:
    """The user (the token) of kubeconfig ``own`` talking to the API server through the proxy at ``proxy_url``."""
    token = json.loads(own.read_text())["users"][0]["user"]["token"]
    path.write_text(json.dumps(kubeconfig(proxy_url, plane.pki / "ca.crt", token, "operator")))
    return path


def operator_kubeconfig_of(plane: ControlPlane) -> Path:
    """A kubeconfig with a token of the operator's own ServiceAccount on ``plane``: exactly its RBAC."""
    token = plane.kubectl("create", "token", OPERATOR_SA, "-n", OPERATOR_NS, "--duration=6h").stdout.strip()
    return plane.write_kubeconfig(plane.workdir / "operator.kubeconfig", token, OPERATOR_SA)
