"""`make demo`: a whole two-stage training, from `kubectl apply` to a caption, on this machine.

What is real: the operator process (kopf, the kubernetes client), the CRD, the Jobs it builds, the trainer
(`/data/train.py`, TensorFlow) and the storage commands (`fetch`, `sync`, on the ufile SDK over HTTPS).
What stands in: the Kubernetes API (in-memory emulator), the cluster's Job controller and kubelet (pods run as
local processes, no GPU), and UFile (a local server seeded with a tiny generated dataset).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "im2txt.dev_im2txttrainings.yaml"
GROUP, VERSION, PLURAL = "im2txt.dev", "v1alpha1", "im2txttrainings"
NAMESPACE = "default"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def kube_api(kubeconfig: Path) -> Iterator[tuple[Any, asyncio.AbstractEventLoop]]:
    """The API emulator on its own event loop in a thread (the operator is a separate process)."""
    from im2txt_standins.kube_api import KubeAPI

    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started, stop = threading.Event(), asyncio.Event()

    async def serve() -> None:
        async with KubeAPI.running(kubeconfig=kubeconfig, crds=[CRD]) as api:
            ready["api"] = api
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True, name="kube-api")
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the Kubernetes API emulator did not start")
    try:
        yield ready["api"], loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


def seed_ufile(store: Any, dataset: Path, bucket: str, prefix: str) -> int:
    files = sorted(p for p in dataset.iterdir() if p.is_file())
    for path in files:
        store.put(bucket, prefix + path.name, path.read_bytes())
    return len(files)


def row(training: dict[str, Any]) -> list[str]:
    status = training.get("status") or {}
    progress = status.get("progress")
    return [training["metadata"]["name"], str(status.get("stage", "")), status.get("phase", ""),
            str(status.get("step", "")), str(status.get("loss", "")),
            f"{progress:.0f}%" if isinstance(progress, int | float) else "",
            status.get("eta", "") or "", str((status.get("evaluation") or {}).get("perplexity", "")),
            status.get("message", "") or ""]


HEAD = ["NAME", "STAGE", "PHASE", "STEP", "LOSS", "PROGRESS", "ETA", "PPL", "MESSAGE"]
WIDTHS = [8, 5, 10, 6, 7, 8, 9, 8, 0]


def line(cells: list[str]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, WIDTHS, strict=True)).rstrip()


def run(work: Path, timeout: float) -> int:
    from kubernetes import client, config

    from im2txt_standins.kubelet import LocalKubelet
    from im2txt_standins.ufile_server import UFileServer
    from im2txt_trainer import synthetic

    t0 = time.time()
    say("im2txt-operator demo. STAND-INS, not a cluster: an in-memory Kubernetes API, a local kubelet that runs")
    say("each Job's pod as processes on this machine (no GPU), and a local UFile server. The operator, the Jobs,")
    say("the trainer and the storage commands are the real ones.\n")

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    dataset = work / "dataset"
    say("1. Generating a tiny dataset in the real record format (coloured shapes, captions like 'a red circle')")
    synthetic.write_dataset(str(dataset), 96, 75, 0, inception=True)

    # A fresh key pair per run (tests pass theirs to search every log and file for them afterwards).
    public = os.environ.get("DEMO_UFILE_PUBLIC_KEY") or f"demo-pub-{secrets.token_hex(8)}"
    private = os.environ.get("DEMO_UFILE_PRIVATE_KEY") or secrets.token_hex(20)
    kubeconfig = work / "kubeconfig"
    with UFileServer({public: private}, root=work / "ufile") as ufile, kube_api(kubeconfig) as (api, loop):
        count = seed_ufile(ufile.store, dataset, "demo-bucket", "uai/im2txt/data/")
        say(f"2. UFile stand-in at {ufile.proxy_url}: uploaded {count} files to ufile://demo-bucket/uai/im2txt/data/")
        say(f"3. Kubernetes API emulator at {api.url} with the Im2txtTraining CRD")

        os.environ["KUBECONFIG"] = str(kubeconfig)
        config.load_kube_config(str(kubeconfig))
        k8s = client.ApiClient()
        core, custom = client.CoreV1Api(k8s), client.CustomObjectsApi(k8s)
        core.create_namespaced_secret(NAMESPACE, {"apiVersion": "v1", "kind": "Secret",
                                                  "metadata": {"name": "ufile-keys"},
                                                  "data": {"publicKey": b64(public), "privateKey": b64(private)}})

        operator_log = (work / "operator.log").open("w")
        # The demo's stages last seconds, so it reads progress every few seconds (production: 30 s).
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "IM2TXT_PROGRESS_INTERVAL": "3"}
        operator = subprocess.Popen([sys.executable, "-m", "im2txt_operator", "run", "--namespace", NAMESPACE,
                                     "--liveness", "", "--metrics-port", "0"],
                                    env=env, stdout=operator_log, stderr=subprocess.STDOUT)
        say(f"4. Operator started (python -m im2txt_operator run), log in {work / 'operator.log'}")

        def publish(ns: str, pod: str, container: str, text: str) -> None:
            loop.call_soon_threadsafe(api.set_log, ns, pod, container, text)

        # HTTPS through the stand-in (CONNECT), its CA trusted by the pods' processes, as UFile's is by the image.
        kubelet = LocalKubelet(k8s, work / "node", extra_env=ufile.client_env(),
                               publish_log=publish)
        try:
            with kubelet:
                training = yaml.safe_load((REPO / "examples" / "training.yaml").read_text())
                custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, training)
                say("5. kubectl apply -f examples/training.yaml\n")
                phase = watch_table(custom, training["metadata"]["name"], t0 + timeout)
                exported = watch_export(custom, training["metadata"]["name"], t0 + timeout) \
                    if phase == "Succeeded" else ""
                evaluated = watch_evaluation(custom, training["metadata"]["name"], t0 + timeout) \
                    if phase == "Succeeded" else []
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            operator_log.close()
        if phase != "Succeeded":
            say(f"\nThe training ended {phase or 'without finishing in time'}; see {work}/operator.log and "
                f"{work}/node/pods/*/*/logs/")
            return 1

        if exported != "Succeeded":
            say(f"\nThe export ended {exported or 'without finishing in time'}; see {work}/node/pods/*/*/logs/")
            return 1
        if len(evaluated) < 2:
            say(f"\nThe evaluation gave no perplexity for {2 - len(evaluated)} stage(s) in time; see "
                f"{work}/node/pods/*/demo-evaluation-*/logs/")
            return 1
        keys = ufile.store.keys("demo-bucket", "uai/im2txt/output/")
        checkpoints = [k for k in keys if "/export/" not in k]
        over_tls = sum(rec.tls for rec in ufile.requests_log)
        say(f"\n   UFile: {len(ufile.requests_log)} requests from the pods, {over_tls} of them over HTTPS")
        say(f"\n6. Checkpoints in ufile://demo-bucket/uai/im2txt/output/ ({len(checkpoints)} files), and the "
            "exported SavedModel:")
        for key in keys:
            say(f"     {key}")
        # The SavedModel as a server would get it: the export folder, one numbered folder per version.
        served = work / "served"
        for key in keys:
            if "/export/" in key:
                local = served / key.split("/export/", 1)[1]
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(ufile.store.get("demo-bucket", key).data)
    image = work / "red-circle.jpg"
    image.write_bytes(synthetic.draw("red", "circle", 75, random.Random(7)))
    say(f"7. Captioning {image.name} through the exported SavedModel (beam search inside the model; what TensorFlow "
        "Serving or KServe would answer):")
    out = subprocess.run([sys.executable, "-m", "im2txt_trainer.caption", f"--saved_model={served}", str(image)],
                         capture_output=True, text=True)
    say(out.stdout.rstrip() or out.stderr[-2000:])
    say(f"\nDone in {time.time() - t0:.0f} s. Everything the demo wrote is in {work}/.")
    return out.returncode


def watch_table(custom: Any, name: str, deadline: float) -> str:
    """Like `kubectl get im2txttrainings -w`: a line whenever the row changes."""
    last: list[str] | None = None
    say(line(HEAD))
    while time.time() < deadline:
        training = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        current = row(training)
        if current != last and training.get("status"):
            say(f"{line(current)}   [{time.strftime('%H:%M:%S')}]")
            last = current
        phase = (training.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return phase
        time.sleep(1)
    return ""


def watch_evaluation(custom: Any, name: str, deadline: float) -> list[dict[str, Any]]:
    """Each stage's last checkpoint is evaluated beside training, stage 2's after it ended: wait for both figures
    (status.evaluation), then say them as `kubectl get -o jsonpath='{.status.evaluation}'` would show them."""
    finals: list[dict[str, Any]] = []
    while time.time() < deadline:
        training = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        stages = ((training.get("status") or {}).get("evaluation") or {}).get("stages") or []
        finals = [s for s in stages if "finalPerplexity" in s]
        if len(finals) == 2:
            break
        time.sleep(1)
    say("evaluation (validation perplexity, the reference formula): " + "; ".join(
        f"stage {s['stage']}: perplexity {s['finalPerplexity']} at step {s['finalStep']}" for s in finals))
    return finals


def watch_export(custom: Any, name: str, deadline: float) -> str:
    """After stage 2: the export Job's progress (status.export) until it ends."""
    last = None
    while time.time() < deadline:
        training = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        export = (training.get("status") or {}).get("export") or {}
        current = (export.get("phase"), export.get("message"))
        if export and current != last:
            say(f"export: {export.get('phase')}: {export.get('message')}   [{time.strftime('%H:%M:%S')}]")
            last = current
        if export.get("phase") in ("Succeeded", "Failed"):
            return str(export["phase"])
        time.sleep(1)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m im2txt_standins.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / ".demo", help="folder for everything it writes")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    args = parser.parse_args(argv)
    return run(args.work, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
