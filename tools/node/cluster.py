"""A one-node Kubernetes on this machine: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet
with containerd, runc and a CNI bridge (`make cluster`; `make cluster-down` undoes every host change).

    python tools/node/cluster.py up      # prints the kubeconfig's path as its last line
    python tools/node/cluster.py down

Needs root and Linux. kubelet and kube-scheduler come from tools/envtest (build.sh --node); containerd, runc, the
CNI plugins, and buildah and mmdebstrap for the images, are Debian packages (apt-get installs what is missing).
Host changes, all undone by `down`: two addresses on lo (the node's IP, which also serves host-side services to
pods, and the `kubernetes` Service IP, on which kube-apiserver listens so that in-cluster clients reach it with no
kube-proxy), the bridge `im2txt0` and the network namespaces of pods, mounts under the kubelet's root, the kubepods
cgroups, /var/log/containers links. There is no cluster DNS: pods reach the API by IP (what in-cluster
configuration uses) and other pods by pod IP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ holds scripts, not a package
from control_plane import ControlPlane, kubeconfig, make_pki

ROOT = Path(__file__).resolve().parents[2]
NODE = "im2txt-node"
NODE_IP = "100.89.0.1"  # on lo (kubelet refuses a loopback IP); host-side services for pods listen here too
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service's ClusterIP (the first of the range): the API, for pods
SERVICE_RANGE = "10.96.0.0/24"
POD_CIDR, GATEWAY, BRIDGE = "10.244.0.0/24", "10.244.0.1", "im2txt0"
CACHE = Path(os.environ.get("IM2TXT_NODE_CACHE") or Path.home() / ".cache" / "im2txt-node")
STATE = Path(os.environ.get("IM2TXT_NODE_DIR") or "/var/lib/im2txt-node")
KUBELET_ROOT = STATE / "kubelet"
CONTAINERD_ROOT = CACHE / "containerd"  # kept: images imported once stay for the next cluster
SOCKET = STATE / "containerd.sock"
PACKAGES = {"containerd": "containerd", "runc": "runc", "/usr/lib/cni/bridge": "containernetworking-plugins",
            "buildah": "buildah", "mmdebstrap": "mmdebstrap"}  # the last two build the images (tools/node/images.sh)
PAUSE = "localhost/im2txt/pause:1"


def log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=300)


def assets() -> Path:
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    done = subprocess.run(["bash", str(ROOT / "tools/envtest/build.sh"), "--node", sys.prefix], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cluster: tools/envtest/build.sh --node failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.split()[-1])


def install_packages() -> None:
    missing = [pkg for path, pkg in PACKAGES.items() if not (shutil.which(path) or Path(path).exists())]
    if missing:
        log(f"installing {' '.join(missing)} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env,
                       capture_output=True)
        # Debian starts the packaged containerd service; ours runs with its own socket and root, so stop it.
        subprocess.run(["systemctl", "disable", "--now", "containerd"], check=False, capture_output=True)


def containerd_config() -> str:
    return f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{STATE / 'containerd-state'}"
[grpc]
  address = "{SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"""


def cni_config() -> dict[str, object]:
    # Routes: the pod range, and the two host addresses on lo (the API and host-side services); no default route,
    # no masquerade: pods reach nothing beyond this node.
    routes = [{"dst": POD_CIDR}, {"dst": f"{SERVICE_IP}/32"}, {"dst": f"{NODE_IP}/32"}]
    return {"cniVersion": "0.4.0", "name": "im2txt", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]], "routes": routes}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "loopback"}]}


def kubelet_config(pki: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0, "healthzPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False, "makeIPTablesUtilChains": False,
        "resolvConf": "", "containerRuntimeEndpoint": f"unix://{SOCKET}",
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "logging": {"verbosity": 1},
    }


def _openssl(*args: str) -> None:
    sh("openssl", *args)


def client_cert(pki: Path, name: str, subject: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(pki / f"{name}.key"),
             "-out", str(pki / f"{name}.csr"))
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"), "-CAkey",
             str(pki / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(pki / "client.ext"),
             "-out", str(pki / f"{name}.crt"))


class Node:
    """The control plane (tools/control_plane.ControlPlane, on the Service IP) plus scheduler, containerd, kubelet."""

    def __init__(self, bins: Path) -> None:
        self.bins = bins
        self.plane = ControlPlane(bins, STATE / "control-plane", api_port=443, host=SERVICE_IP)
        self.procs: dict[str, int] = {}

    def spawn(self, name: str, argv: list[str]) -> None:
        out = (STATE / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc.pid

    def up(self) -> Path:
        STATE.mkdir(parents=True, exist_ok=True)
        (STATE / "netns-before").write_text("\n".join(netns()))
        for address in (NODE_IP, SERVICE_IP):
            sh("ip", "addr", "add", f"{address}/32", "dev", "lo", check=False)
        (STATE / "cni").mkdir(exist_ok=True)
        (STATE / "cni" / "10-im2txt.conflist").write_text(json.dumps(cni_config(), indent=1))
        (STATE / "containerd.toml").write_text(containerd_config())
        self.spawn("containerd", ["containerd", "--config", str(STATE / "containerd.toml")])
        wait(lambda: sh("ctr", "--address", str(SOCKET), "version", check=False).returncode == 0, 30, "containerd")
        import_pause()
        plane = self.plane
        start_control_plane(plane)
        pki = plane.pki
        # The kubelet is the node (a client certificate system:node:<name> in system:nodes: the Node authorizer);
        # the scheduler and users share the admin kubeconfig.
        node_kubeconfig = STATE / "kubelet.kubeconfig"
        config = kubeconfig(plane.server, pki / "ca.crt", "", f"system:node:{NODE}")
        config["users"][0]["user"] = {"client-certificate": str(pki / "node.crt"), "client-key": str(pki / "node.key")}
        node_kubeconfig.write_text(json.dumps(config))
        plane.kubectl("create", "clusterrolebinding", "im2txt-apiserver-kubelet",
                      "--clusterrole=system:kubelet-api-admin", "--user=kube-apiserver-kubelet-client")
        self.spawn("kube-scheduler", [str(self.bins / "kube-scheduler"), f"--kubeconfig={plane.kubeconfig_path}",
                                      "--leader-elect=false", "--secure-port=0", "--v=1"])
        (STATE / "kubelet.yaml").write_text(json.dumps(kubelet_config(pki)))
        KUBELET_ROOT.mkdir(parents=True, exist_ok=True)
        self.spawn("kubelet", [str(self.bins / "kubelet"), f"--config={STATE / 'kubelet.yaml'}",
                               f"--kubeconfig={node_kubeconfig}", f"--root-dir={KUBELET_ROOT}", f"--node-ip={NODE_IP}",
                               f"--hostname-override={NODE}", "--v=1"])
        wait(lambda: node_ready(plane), 120, f"node {NODE} Ready")
        self.procs.update({name: plane.procs[name].pid for name in plane.procs})
        (STATE / "pids.json").write_text(json.dumps(self.procs))
        return plane.kubeconfig_path


def start_control_plane(plane: ControlPlane) -> None:
    """ControlPlane.start with the API on the Service IP (port 443) and the kubelet client certificate."""
    make_pki(plane.pki, (SERVICE_IP, NODE_IP))
    client_cert(plane.pki, "kubelet-client", "/CN=kube-apiserver-kubelet-client")
    client_cert(plane.pki, "node", f"/O=system:nodes/CN=system:node:{NODE}")
    plane.apiserver_args = [f"--client-ca-file={plane.pki / 'ca.crt'}",
                            f"--kubelet-client-certificate={plane.pki / 'kubelet-client.crt'}",
                            f"--kubelet-client-key={plane.pki / 'kubelet-client.key'}",
                            "--kubelet-preferred-address-types=InternalIP"]
    plane.start()


def node_ready(plane: ControlPlane) -> bool:
    done = plane.kubectl("get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                         check=False)
    return done.stdout.strip() == "True"


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: {what}: not after {timeout:.0f} s (logs in {STATE})")
        time.sleep(0.5)


def netns() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list", check=False).stdout.splitlines() if line.strip()]


def import_pause() -> None:
    archive = CACHE / "pause.oci.tar"
    if not archive.exists():
        subprocess.run(["bash", str(ROOT / "tools/node/pause.sh"), str(archive)], check=True)
    sh("ctr", "--address", str(SOCKET), "-n", "k8s.io", "images", "import", "--no-unpack=false", str(archive))


def down() -> None:
    pids = json.loads((STATE / "pids.json").read_text()) if (STATE / "pids.json").exists() else {}
    for name in ("kubelet", "kube-scheduler", "kube-controller-manager"):
        stop(name, pids.get(name))
    if SOCKET.exists():  # the pods' containers and sandboxes, then containerd (its images stay in the cache)
        ctr = ["ctr", "--address", str(SOCKET), "-n", "k8s.io"]
        for task in sh(*ctr, "tasks", "ls", "-q", check=False).stdout.split():
            sh(*ctr, "tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(1)
        for task in sh(*ctr, "tasks", "ls", "-q", check=False).stdout.split():
            sh(*ctr, "tasks", "delete", "-f", task, check=False)
        for container in sh(*ctr, "containers", "ls", "-q", check=False).stdout.split():
            sh(*ctr, "containers", "delete", container, check=False)
    stop("containerd", pids.get("containerd"))
    stop("kube-apiserver", pids.get("kube-apiserver"), grace=20)
    stop("etcd", pids.get("etcd"))
    for target in sorted(mounts_under(STATE, CACHE / "containerd"), key=len, reverse=True):
        sh("umount", "-l", target, check=False)
    before = set((STATE / "netns-before").read_text().split()) if (STATE / "netns-before").exists() else set()
    for name in set(netns()) - before:
        if name.startswith("cni-"):
            sh("ip", "netns", "delete", name, check=False)
    sh("ip", "link", "delete", BRIDGE, check=False)
    for address in (NODE_IP, SERVICE_IP):
        sh("ip", "addr", "del", f"{address}/32", "dev", "lo", check=False)
    remove_cgroups()
    for folder in (Path("/var/log/containers"), Path("/var/log/pods")):
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(STATE, ignore_errors=True)
    shutil.rmtree("/var/lib/cni/networks/im2txt", ignore_errors=True)


def stop(name: str, pid: int | None, grace: float = 15) -> None:
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.2)
        else:
            log(f"{name} did not stop on SIGTERM within {grace:.0f} s: SIGKILL")
            os.kill(pid, signal.SIGKILL)


def mounts_under(*folders: Path) -> list[str]:
    roots = [str(f.resolve()) for f in folders]
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if any(target == r or target.startswith(r + "/") for r in roots):
            found.append(target)
    return found


def remove_cgroups() -> None:
    for controller in Path("/sys/fs/cgroup").iterdir():
        for top in controller.glob("kubepods*"):
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("action", choices=("up", "down"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cluster: needs root (containerd, kubelet, network and mounts)")
    if args.action == "down":
        down()
        log("down; every host change undone")
        return
    if (STATE / "pids.json").exists():
        raise SystemExit(f"cluster: one is up already ({STATE}); `make cluster-down` first")
    install_packages()
    bins = assets()
    node = Node(bins)
    try:
        path = node.up()
    except BaseException:
        (STATE / "pids.json").write_text(json.dumps({**node.procs, **{n: p.pid for n, p in node.plane.procs.items()}}))
        down()
        raise
    print(path)


if __name__ == "__main__":
    main()
