"""``python -m im2txt_operator run|render``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

LIVENESS = "http://0.0.0.0:8080/healthz"


def _trainings(docs: Iterator[Any]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if not doc:
            continue
        if doc.get("kind") == "List":
            yield from _trainings(iter(doc.get("items") or []))
        elif doc.get("kind") == "Im2txtTraining":
            yield doc


def render(paths: Sequence[str], out: Any = sys.stdout) -> int:
    """Print the objects the operator would create for each training in the files (offline, no cluster): the
    Jobs of its stages (each after its headless Service when numNodes > 1) and of the export after them, and its
    TensorBoard Deployment and Service when enabled."""
    from im2txt_operator.children import desired
    from im2txt_operator.pods import Owner
    from im2txt_operator.spec import SpecError, parse_spec

    jobs = []
    for path in paths:
        with sys.stdin if path == "-" else open(path, encoding="utf-8") as f:
            for training in _trainings(yaml.safe_load_all(f)):
                meta = training.get("metadata") or {}
                name = meta.get("name") or "<name>"
                try:
                    settings = parse_spec(training.get("spec"))
                    owner = Owner(name=name, namespace=meta.get("namespace") or "default",
                                  uid=meta.get("uid") or "<uid of the training>")
                    for objects in desired(owner, settings).values():
                        jobs += objects
                except SpecError as e:
                    print(f"{path}: {name}: {e}", file=sys.stderr)
                    return 2
    if not jobs:
        print("no Im2txtTraining found", file=sys.stderr)
        return 2
    yaml.safe_dump_all(jobs, out, sort_keys=False, default_flow_style=False)
    return 0


@dataclass(frozen=True)
class Election:
    """Where the Lease is and who this process is (``run --leader-elect``)."""

    namespace: str
    name: str
    identity: str


def own_identity() -> str:
    """Who this process is, for kopf and the Lease: the pod's name where the Deployment gives it, else
    <hostname>_<uuid>. Never kopf's default, which asks the passwd database (getpass.getuser()) and crashes in an
    image whose numeric user has no passwd entry."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4()}"


def run(namespaces: Sequence[str], all_namespaces: bool, liveness: str | None, verbose: bool,
        metrics_port: int = 9090, election: Election | None = None, log_format: str = "text",
        ufile_domains: Sequence[str] | None = None) -> int:
    import kopf

    import im2txt_operator.controller.wiring  # noqa: F401 - registers the kopf handlers
    from im2txt_operator.metrics import Metrics

    # JSON: one object per line (python-json-logger, through kopf); a line about a training carries its object.
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL)
    if not verbose:  # quiet by default: one line per transition from us, not one per event from kopf
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # kopf's health endpoint serves on aiohttp, whose access log is one INFO line per request: one per probe.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(_until_supported(liveness or None))
    if election is None:
        kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=list(namespaces),
                 liveness_endpoint=liveness or None, identity=own_identity(),
                 memo=_memo(metrics_port, Metrics(), ufile_domains))
        return 0
    return asyncio.run(_run_as_leader(election, all_namespaces, namespaces, liveness or None, metrics_port,
                                      ufile_domains))


def _memo(metrics_port: int, metrics: Any, ufile_domains: Sequence[str] | None = None,
          fence: Callable[[], float] | None = None) -> Any:
    """What the operator's startup handler makes its context of, through kopf's memo: the metrics (made here, so a
    standby serves them before it leads), their port (0: none, or served already), the progress interval (the
    environment is read here, once, for tests and the demo), the UFile domains trainings may name, and ``fence``:
    the leader's time left on its Lease, which bounds every write (None: not leader-elected)."""
    import kopf

    from im2txt_operator.controller.context import PROGRESS_INTERVAL
    from im2txt_operator.spec import UFILE_DOMAINS

    interval = float(os.environ.get("IM2TXT_PROGRESS_INTERVAL") or PROGRESS_INTERVAL)
    return kopf.Memo(metrics_port=metrics_port, metrics=metrics, progress_interval=interval,
                     ufile_domains=tuple(ufile_domains or UFILE_DOMAINS), fence=fence)


async def _serve_standby_health(endpoint: str | None,
                                health: Callable[[], tuple[bool, str]]) -> asyncio.Server | None:
    """A standby's answer to the probes (kopf's own endpoint starts only with the operator): 200 while it can read
    the Lease, so that it could take over; 503 with the reason while it cannot (the API does not answer)."""
    if not endpoint:
        return None
    url = urlsplit(endpoint)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            ok, why = health()
            body = (why + "\n").encode()
            status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, url.hostname, url.port)


async def _until_supported(liveness: str | None, retry_seconds: float = 30.0) -> None:
    """Return once the API server runs a Kubernetes version the operator supports. Until then nothing is watched
    or written, the health endpoint answers 503 with the reason (the Pod is not Ready), and the log says it once.
    An API that does not answer is left to what comes next (a standby's wait for the Lease, kopf's retries), which
    report it; the version is read again there only through this check, at the next start."""
    from im2txt_operator import server_version
    from im2txt_operator.kube import Kube

    log = logging.getLogger("im2txt_operator")
    kube = Kube()
    why: str | None = None
    server = None
    try:
        while True:
            try:
                info = await kube.server_version()
            except Exception as e:
                log.warning("cannot read the API server's version (%s); going on without the check", e)
                return
            why = server_version.refusal(info)
            if why is None:
                log.info("Kubernetes %s (supported: %s)", info.get("gitVersion"), server_version.SUPPORTED)
                if server_version.untested(info):
                    log.warning("Kubernetes %s is newer than the newest minor this release was tested on (%s)",
                                info.get("gitVersion"), server_version.SUPPORTED)
                return
            if server is None:
                log.error("not starting: %s", why)
                server = await _serve_standby_health(liveness, lambda said=why: (False, f"not starting: {said}"))
            await asyncio.sleep(retry_seconds)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        await kube.close()


async def _run_as_leader(election: Election, all_namespaces: bool, namespaces: Sequence[str],
                         liveness: str | None, metrics_port: int = 9090,
                         ufile_domains: Sequence[str] | None = None) -> int:
    """Wait for the Lease, then run the operator while renewing it. Losing it ends the process at once (the
    Deployment restarts it as a standby): a leader that may no longer act must not finish what it started."""
    import kopf

    import im2txt_operator.controller.wiring  # noqa: F401 - registers the kopf handlers
    from im2txt_operator.kube import Kube
    from im2txt_operator.leader import LeaderElector
    from im2txt_operator.metrics import Metrics

    metrics = Metrics()  # handed to the operator through the memo once the Lease is won
    if metrics_port:  # served from now on, so a standby answers its PodMonitor too (im2txt_leader 0)
        try:
            metrics.serve(metrics_port)
        except OSError as e:  # metrics are auxiliary: never keep the operator from running
            logging.getLogger("im2txt_operator").warning("metrics endpoint on port %s not started: %s",
                                                         metrics_port, e)
    kube = Kube()
    elector = LeaderElector(kube, election.namespace, election.name, election.identity)
    server = await _serve_standby_health(liveness, elector.standby_health)
    try:
        await elector.acquire()
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()

    async def hold_or_exit() -> None:
        await elector.hold()  # returns only when the Lease is lost
        logging.getLogger("im2txt_operator").error("leadership lost: exiting")
        logging.shutdown()
        os._exit(1)

    holding = asyncio.create_task(hold_or_exit())

    @kopf.on.cleanup()
    async def stop_renewing(**_: Any) -> None:
        # kopf waits up to 5 s for every other task of the loop to end before it returns; the renewal loop must
        # not be one of them. The Lease stays ours until released below, or until it expires.
        holding.cancel()

    # In this task, not a new one: kopf would wait for a task that waits for it.
    await kopf.operator(standalone=True, clusterwide=all_namespaces, namespaces=list(namespaces),
                        liveness_endpoint=liveness, identity=election.identity,
                        memo=_memo(0, metrics, ufile_domains, elector.time_left))  # /metrics: served above
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding  # no renewal may land after the release
    await elector.release()  # a clean stop (SIGTERM): the standby takes over now, not after the lease expires
    await kube.close()
    return 0


def _domains(value: str) -> tuple[str, ...]:
    """--ufile-domains: comma-separated host suffixes, each starting with a dot (.ufileos.com)."""
    domains = tuple(d.strip() for d in value.split(",") if d.strip())
    if not domains or any(not re.fullmatch(r"\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?", d) for d in domains):
        raise argparse.ArgumentTypeError(f"expected host suffixes such as .ufileos.com, comma-separated, got {value!r}")
    return domains


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m im2txt_operator",
                                     description="Im2txtTraining operator: runs im2txt's two stages as Jobs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the operator (kopf, standalone) against the current kubeconfig")
    scope = p_run.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeat)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all namespaces")
    p_run.add_argument("--liveness", default=LIVENESS, help=f"health endpoint (default {LIVENESS}; '' for none)")
    p_run.add_argument("--metrics-port", type=int, default=9090, help="Prometheus /metrics port (0: off)")
    p_run.add_argument("--verbose", action="store_true")
    p_run.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="text (default) or json: one JSON object per line, a training's lines with its "
                            "namespace, name, stage and generation as fields")
    p_run.add_argument("--ufile-domains", type=_domains, default=None, metavar="SUFFIX[,SUFFIX...]",
                       help="the host suffixes a training's spec.ufile may name (its storage containers send "
                            "requests signed with its key pair there); default UCloud's: "
                            ".ufileos.com,.ufile.ucloud.cn,.ufile.ucloud.com.cn")
    p_run.add_argument("--leader-elect", action="store_true",
                       help="run only while holding a coordination.k8s.io Lease (replicas > 1: one acts, the "
                            "others stand by)")
    p_run.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE") or "im2txt-system",
                       help="namespace of the Lease (default $POD_NAMESPACE, else im2txt-system)")
    p_run.add_argument("--lease-name", default="im2txt-operator", help="name of the Lease (default im2txt-operator)")
    p_run.add_argument("--identity", default=own_identity(),
                       help="this process in the Lease (default $POD_NAME, else <hostname>_<uuid>)")
    p_uai = sub.add_parser("from-uai", help="print the Im2txtTraining for UAI Train job(s) (offline)",
                           description="Turn UAI Train jobs (CreateUAITrainJob's fields as JSON or YAML: one job, "
                                       "or a list of the stage-1 and stage-2 jobs), or the guide's start commands "
                                       "(--cmd, once per stage), into one Im2txtTraining.")
    p_uai.add_argument("files", nargs="*", help="JSON or YAML files with the job(s) ('-' for stdin)")
    p_uai.add_argument("--cmd", action="append", default=[], help="a start command (repeat: stage 1, then stage 2)")
    p_uai.add_argument("--data-path", help="with --cmd: the data input's UFile URL")
    p_uai.add_argument("--output-path", help="with --cmd: the data output's UFile URL")
    p_uai.add_argument("--name", help="the training's name (default: TrainJobName, lower-cased)")
    p_uai.add_argument("--namespace", help="the training's namespace")
    p_uai.add_argument("--secret", default="ufile-keys", help="the Secret with the UFile key pair (default ufile-keys)")
    p_uai.add_argument("--gpus", type=int, help="GPUs per node, where the job gives only UCloud's TrainWorkId")
    p_render = sub.add_parser("render", help="print the Jobs a training would get (offline)")
    p_render.add_argument("files", nargs="+", help="YAML files with Im2txtTraining resources ('-' for stdin)")
    args = parser.parse_args(argv)
    if args.command == "render":
        return render(args.files)
    if args.command == "from-uai":
        from im2txt_operator.from_uai import main as from_uai

        return from_uai(args)
    if not args.namespace and not args.all_namespaces:
        parser.error("run: give --namespace NS or --all-namespaces")
    election = Election(args.lease_namespace, args.lease_name, args.identity) if args.leader_elect else None
    return run(args.namespace, args.all_namespaces, args.liveness, args.verbose, args.metrics_port, election,
               args.log_format, args.ufile_domains)
