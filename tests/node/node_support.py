"""The real-node tier's fixtures and helpers: a one-node cluster (tools/node), the project's images built from its
Dockerfiles, the operator deployed with `make cluster-deploy`, and the UFile stand-in on an address the pods reach.

Skips only where this machine cannot run a node (not root, not Linux, no cgroups), and says why. Set
IM2TXT_NODE_REUSE=1 to keep the cluster up after the run and reuse it in the next (development).

The fixtures are module-scoped: the cluster, its UFile stand-in and their threads end with tests/node, before the
rest of the suite runs (session-scoped, they kept a ufile-server thread and a kubelet alive under later tests)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "node"))
import cluster  # noqa: E402

KUBECONFIG = cluster.STATE / "control-plane" / "admin.kubeconfig"
KUBECTL = str(Path(sys.prefix) / "bin" / "kubectl")
REUSE = os.environ.get("IM2TXT_NODE_REUSE") == "1"
TRAINER = "localhost/im2txt/im2txt-trainer:0.1.0"
SYSTEM = "im2txt-system"
NS = "node-e2e"
OUTPUT = "uai/im2txt/output/"


def why_no_node() -> str:
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (containerd, kubelet, network and mounts)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem at /sys/fs/cgroup"
    if not (Path("/usr/bin/apt-get").exists() or Path("/usr/bin/containerd").exists()):
        return "no containerd and no apt-get to install it"
    return ""


def kubectl(*args: str, check: bool = True, input: str | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([KUBECTL, f"--kubeconfig={KUBECONFIG}", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done


def get(*args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0,
               on_timeout: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{on_timeout()}")
        time.sleep(every)


def _up() -> bool:
    return (cluster.STATE / "pids.json").exists() and KUBECONFIG.exists() and kubectl(
        "get", "node", cluster.NODE, check=False).returncode == 0


@pytest.fixture(scope="module")
def node() -> Iterator[None]:
    if why := why_no_node():
        pytest.skip(f"real-node tier skipped: {why}")
    started = time.monotonic()
    if not (REUSE and _up()):
        if (cluster.STATE / "pids.json").exists():
            subprocess.run([sys.executable, str(ROOT / "tools/node/cluster.py"), "down"], check=False, timeout=300)
        subprocess.run([sys.executable, str(ROOT / "tools/node/cluster.py"), "up"], check=True, timeout=1800)
    print(f"\nnode: cluster up in {time.monotonic() - started:.0f} s", flush=True)
    t = time.monotonic()
    subprocess.run(["make", "-s", "cluster-images"], cwd=ROOT, check=True, timeout=3600)
    print(f"node: images built and imported in {time.monotonic() - t:.0f} s", flush=True)
    try:
        yield
    finally:
        if not REUSE:
            subprocess.run([sys.executable, str(ROOT / "tools/node/cluster.py"), "down"], check=False, timeout=300)


@pytest.fixture(scope="module")
def deployed(node: None) -> str:
    """`make cluster-deploy` (make deploy with the local images): returns its output. A Deployment left by an
    earlier run (IM2TXT_NODE_REUSE) goes first: its pods would keep running the image the tag named then."""
    kubectl("-n", "im2txt-system", "delete", "deployment", "im2txt-operator", "--ignore-not-found", "--wait=true",
            timeout=180)
    done = subprocess.run(["make", "-s", "cluster-deploy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"make cluster-deploy failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def ufile(node: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The UFile stand-in on the node's address, port 80: bucket `100` with suffix `.89.0.1` spells its host (there
    is no cluster DNS), seeded with a tiny dataset in the real record format; yields (server, public, private)."""
    from im2txt_standins.demo import seed_ufile
    from im2txt_standins.ufile_server import UFileServer
    from im2txt_trainer import synthetic

    dataset = tmp_path_factory.mktemp("dataset")
    synthetic.write_dataset(str(dataset), 96, 75, 0, inception=True)
    public, private = f"node-pub-{secrets.token_hex(6)}", secrets.token_hex(20)
    with UFileServer({public: private}, host=cluster.NODE_IP, port=80) as server:
        seed_ufile(server.store, dataset, BUCKET, "uai/im2txt/data/")
        yield server, public, private


BUCKET, SUFFIX = "100", ".89.0.1"
assert BUCKET + SUFFIX == cluster.NODE_IP


def secret(namespace: str, public: str, private: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ufile-keys", "namespace": namespace},
            "data": {"publicKey": base64.b64encode(public.encode()).decode(),
                     "privateKey": base64.b64encode(private.encode()).decode()}}
    kubectl("apply", "-f", "-", input=json.dumps(body))


def lease_holder() -> str:
    lease = get("-n", SYSTEM, "lease", "im2txt-operator")
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def operator_pods() -> list[dict[str, Any]]:
    pods = get("-n", SYSTEM, "pods", "-l", "app.kubernetes.io/name=im2txt-operator")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or ())


def new_training(name: str) -> dict[str, Any]:
    return {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"dataPath": f"ufile://{BUCKET}/uai/im2txt/data/", "outputPath": f"ufile://{BUCKET}/{OUTPUT}",
                     "credentialsSecret": "ufile-keys", "ufile": {"uploadSuffix": SUFFIX, "downloadSuffix": SUFFIX},
                     "image": TRAINER, "inputFilePattern": "train-?????-of-00002", "numberOfSteps": 100,
                     "stage2NumberOfSteps": 200, "gpus": 0, "checkpointIntervalSeconds": 10,
                     "extraArgs": ["--image_size=75", "--batch_size=8", "--save_interval_secs=5"],
                     "tensorboard": {"enabled": name == "coco", "intervalSeconds": 10},
                     # The evaluation beside training (its own pod, CPU only) for the main scenario only; a small
                     # CPU request, so that it fits this 2-core node beside both replicas, a stage and TensorBoard.
                     "evaluation": {"enabled": name == "coco", "filePattern": "val-?????-of-00001",
                                    "numExamples": 32, "resources": {"requests": {"cpu": "200m", "memory": "1Gi"},
                                                                     "limits": {"memory": "3Gi"}}}}}


def status_of(name: str) -> dict[str, Any]:
    return get("-n", NS, "im2txttraining", name).get("status") or {}


def final_perplexities(name: str) -> list[dict[str, Any]]:
    """status.evaluation's two stages once both have their last checkpoint's figure, else []."""
    stages = (status_of(name).get("evaluation") or {}).get("stages") or ()
    done = [s for s in stages if "finalPerplexity" in s]
    return done if len(done) == 2 else []


def running_pod(job: str) -> str:
    pods = get("-n", NS, "pods", "-l", f"job-name={job}")["items"]
    for pod in pods:
        for c in pod["status"].get("containerStatuses") or ():
            if c["name"] == "trainer" and "running" in (c.get("state") or {}):
                return str(pod["metadata"]["name"])
    return ""


def trainer_log(pod: str) -> str:
    return kubectl("-n", NS, "logs", pod, "-c", "trainer", check=False).stdout


def trainer_log_times(pod: str) -> list[float]:
    """When each line of the trainer's log was written (the container runtime's own stamps, on this host's clock)."""
    lines = kubectl("-n", NS, "logs", pod, "-c", "trainer", "--timestamps", check=False).stdout.splitlines()
    return [datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp() for line in lines if line.strip()]


def scalar_tags(url: str) -> set[str]:
    """Every scalar tag TensorBoard serves, over all runs (empty until it has read event files)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            runs = json.loads(resp.read())
    except OSError:
        return set()
    return {tag for run in runs.values() for tag in run}


def uploaded_step(server: Any) -> int:
    """The newest checkpoint step in the bucket (its index file is uploaded last)."""
    steps = [int(m[1]) for k in server.store.keys(BUCKET, OUTPUT) if (m := re.search(r"model\.ckpt-(\d+)\.index$", k))]
    return max(steps, default=0)


def hostpath_claim(name: str, folder: Path) -> None:
    """A PersistentVolume on a hostPath folder, bound to a claim of the same name (hostPath ignores fsGroup)."""
    folder.mkdir(parents=True, exist_ok=True)
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{NS}-{name}"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                   "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(folder)},
                   "claimRef": {"namespace": NS, "name": name}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": f"{NS}-{name}",
                    "resources": {"requests": {"storage": "1Gi"}}}}
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]}))


def run_deploy_check() -> subprocess.CompletedProcess[str]:
    """make deploy's wait (tools/deploy_check.py) on the node's operator Deployment as it stands."""
    return subprocess.run([sys.executable, str(ROOT / "tools/deploy_check.py"), f"--kubectl={KUBECTL}",
                           "--timeout=300"], capture_output=True, text=True, timeout=400,
                          env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})
