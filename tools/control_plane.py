"""A real Kubernetes control plane on loopback, the envtest way: etcd, kube-apiserver, kube-controller-manager.

No scheduler and no kubelet: pods stay unscheduled, and a test plays the kubelet's part by patching a pod's
status subresource (phase Succeeded/Failed); the real Job controller, garbage collector and service-account
controllers do the rest. Authentication is by static bearer tokens (``admin`` in system:masters); RBAC and the
default admission plugins are on, as on a real cluster.

    python tools/control_plane.py [--assets DIR] [--dir DIR]   # start, print KUBECONFIG, run until Ctrl-C

The binaries come from ``make envtest`` (tools/envtest/build.sh), or any folder named by KUBEBUILDER_ASSETS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "tools" / "envtest" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
SERVICE_RANGE = "10.96.0.0/24"  # never routed: the apiserver only allocates ClusterIPs from it


def find_assets(venv: Path | None = None) -> Path:
    """The folder with the four binaries: $KUBEBUILDER_ASSETS, else what tools/envtest/build.sh builds."""
    if env := os.environ.get("KUBEBUILDER_ASSETS"):
        folder = Path(env)
    else:
        venv = venv or Path(sys.prefix)
        done = subprocess.run(["bash", str(BUILD_SCRIPT), str(venv)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"tools/envtest/build.sh failed:\n{done.stderr[-3000:]}")
        folder = Path(done.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
    if missing:
        raise RuntimeError(f"{folder} lacks {', '.join(missing)}: run `make envtest` or set KUBEBUILDER_ASSETS")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(folder: Path, addresses: tuple[str, ...] = ()) -> None:
    """A CA, the apiserver's serving certificate for 127.0.0.1/localhost (and ``addresses``), and the
    service-account key pair."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, key = folder / "ca.crt", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=im2txt-envtest-ca",
             "-keyout", str(key), "-out", str(ca))
    extra = "".join(f",IP:{a}" for a in addresses)
    (folder / "san.ext").write_text(f"subjectAltName=IP:127.0.0.1{extra},DNS:localhost,DNS:kubernetes.default.svc\n"
                                    "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
             "-keyout", str(folder / "apiserver.key"), "-out", str(folder / "apiserver.csr"))
    _openssl("x509", "-req", "-in", str(folder / "apiserver.csr"), "-CA", str(ca), "-CAkey", str(key),
             "-CAcreateserial", "-days", "2", "-extfile", str(folder / "san.ext"),
             "-out", str(folder / "apiserver.crt"))
    _openssl("genrsa", "-out", str(folder / "sa.key"), "2048")
    _openssl("rsa", "-in", str(folder / "sa.key"), "-pubout", "-out", str(folder / "sa.pub"))


def kubeconfig(server: str, ca: Path, token: str, user: str = "admin", namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "envtest",
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user, "namespace": namespace}}],
    }


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``workdir``; ``start()`` returns when all serve."""

    assets: Path
    workdir: Path
    etcd_url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)
    host: str = "127.0.0.1"  # where kube-apiserver listens (tools/node: the `kubernetes` Service IP)
    apiserver_args: list[str] = field(default_factory=list)  # more flags (tools/node: the kubelet client cert)
    controller_manager_args: list[str] = field(default_factory=list)  # more flags (bench: its API QPS)

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.api_port}"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def write_kubeconfig(self, path: Path, token: str, user: str, namespace: str = "default") -> Path:
        # JSON is YAML: no YAML library needed here.
        path.write_text(json.dumps(kubeconfig(self.server, self.pki / "ca.crt", token, user, namespace), indent=1))
        path.chmod(0o600)
        return path

    def _spawn(self, name: str, args: list[str]) -> None:
        self.args[name] = args
        log = (self.workdir / f"{name}.log").open("ab")
        # A new session: a Ctrl-C of the caller does not reach them before stop() does it in order.
        self.procs[name] = subprocess.Popen([str(self.assets / name), *args], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def _get(self, path: str) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _wait(self, what: str, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            with contextlib.suppress(OSError):
                if ready():  # type: ignore[operator]
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
            time.sleep(0.2)

    def start(self, timeout: float = 120) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.pki / "ca.crt").exists():
            make_pki(self.pki)
        # token,user,uid,"groups": the admin is in system:masters (like a cluster-admin kubeconfig).
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
        etcd_port, peer_port = free_port(), free_port()
        etcd = self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [f"--data-dir={self.workdir / 'etcd'}", f"--listen-client-urls={etcd}",
                             f"--advertise-client-urls={etcd}", f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                             "--unsafe-no-fsync", "--log-level=warn"])
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd}", f"--bind-address={self.host}", f"--advertise-address={self.host}",
            f"--secure-port={self.api_port}", f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}", f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            f"--token-auth-file={tokens}", "--authorization-mode=Node,RBAC", "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--v=1", *self.apiserver_args])
        self._wait("kube-apiserver", lambda: self._get("/readyz")[0] == 200, timeout)
        self.write_kubeconfig(self.kubeconfig_path, self.admin_token, "admin")
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig_path}", "--leader-elect=false",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            "--use-service-account-credentials=false", f"--root-ca-file={self.pki / 'ca.crt'}",
            "--secure-port=0", "--v=1", *self.controller_manager_args])
        # The service-account controller makes every namespace's "default" account: the controller manager works.
        self._wait("kube-controller-manager",
                   lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200, timeout)
        return self

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(name)

    def restart_apiserver(self, while_down: object = None, timeout: float = 120) -> None:
        """Stop kube-apiserver, call ``while_down()`` (e.g. etcdctl), start it again: every watch is cut, and a
        fresh watch cache answers watches from older resourceVersions with 410 Gone."""
        self._stop("kube-apiserver")
        if while_down is not None:
            while_down()  # type: ignore[operator]
        self._spawn("kube-apiserver", self.args["kube-apiserver"])
        self._wait("kube-apiserver", lambda: self._get("/readyz")[0] == 200, timeout)

    def etcdctl(self, *args: str) -> str:
        """etcdctl (shipped beside etcd) against this control plane's etcd."""
        binary = Path(os.path.realpath(self.assets / "etcd")).parent / "etcdctl"
        done = subprocess.run([str(binary), f"--endpoints={self.etcd_url}", *args], capture_output=True, text=True,
                              check=True, timeout=60, env={**os.environ, "ETCDCTL_API": "3"})
        return done.stdout

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.assets / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig_path}", *args]
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120, check=False)
        for _ in range(20):
            # `kubectl wait --for=condition=...` fails at once on an object whose status has no conditions yet (a CRD
            # the API server has not looked at): "accessor error: <nil> is of the type <nil>". Ask again.
            if args[:1] != ("wait",) or done.returncode == 0 or "accessor error" not in done.stderr:
                break
            time.sleep(0.5)
            done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done


@contextlib.contextmanager
def running(assets: Path | None = None, workdir: Path | None = None) -> Iterator[ControlPlane]:
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="im2txt-envtest-")))
        plane = ControlPlane(assets or find_assets(), workdir)
        try:
            yield plane.start()
        finally:
            plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--assets", type=Path, help="folder with the binaries (default: make envtest's)")
    parser.add_argument("--dir", type=Path, help="working folder (default: a temporary one, removed at exit)")
    args = parser.parse_args()
    with running(args.assets, args.dir) as plane:
        print(f"export KUBECONFIG={plane.kubeconfig_path}", flush=True)
        print("control plane up; Ctrl-C stops it", file=sys.stderr, flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
    if args.dir is None:
        shutil.rmtree(plane.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
