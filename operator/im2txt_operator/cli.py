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

import yaml

from im2txt_operator import gc_tuning
from im2txt_operator.api_budget import ApiBudget
from im2txt_operator.startup import serve_standby_health, until_supported

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
        ufile_domains: Sequence[str] | None = None, budget: Any = None, ufile_insecure_http: bool = False) -> int:
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
    gc_tuning.tune()  # everything is loaded: freeze it, and keep full collections from pausing the event loop
    asyncio.run(until_supported(liveness or None))
    if election is None:
        kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=list(namespaces),
                 liveness_endpoint=liveness or None, identity=own_identity(),
                 memo=_memo(metrics_port, Metrics(), ufile_domains, budget=budget,
                            ufile_insecure_http=ufile_insecure_http,
                            scope=None if all_namespaces else tuple(namespaces)))
        return 0
    return asyncio.run(_run_as_leader(election, all_namespaces, namespaces, liveness or None, metrics_port,
                                      ufile_domains, budget, ufile_insecure_http))


def _memo(metrics_port: int, metrics: Any, ufile_domains: Sequence[str] | None = None,
          fence: Callable[[], float] | None = None, budget: Any = None, ufile_insecure_http: bool = False,
          scope: tuple[str, ...] | None = None) -> Any:
    """What the operator's startup handler makes its context of, through kopf's memo: the metrics (made here, so a
    standby serves them before it leads), their port (0: none, or served already), the progress interval (the
    environment is read here, once, for tests and the demo), the UFile domains trainings may name, and ``fence``:
    the leader's time left on its Lease, which bounds every write (None: not leader-elected), and the API budget
    (api_budget.ApiBudget: the client's rate limit and the poller's share), and whether the admin lets UFile
    traffic go over plain HTTP (run --ufile-insecure-http), and ``scope``: the namespaces watched (None: all), where
    startup lists and watches the operator's Jobs."""
    import kopf

    from im2txt_operator.controller.context import PROGRESS_INTERVAL
    from im2txt_operator.spec import UFILE_DOMAINS

    interval = float(os.environ.get("IM2TXT_PROGRESS_INTERVAL") or PROGRESS_INTERVAL)
    return kopf.Memo(metrics_port=metrics_port, metrics=metrics, progress_interval=interval,
                     ufile_domains=tuple(ufile_domains or UFILE_DOMAINS), fence=fence, budget=budget,
                     ufile_insecure_http=ufile_insecure_http, scope=scope)


async def _run_as_leader(election: Election, all_namespaces: bool, namespaces: Sequence[str],
                         liveness: str | None, metrics_port: int = 9090,
                         ufile_domains: Sequence[str] | None = None, budget: Any = None,
                         ufile_insecure_http: bool = False) -> int:
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
    server = await serve_standby_health(liveness, elector.standby_health)
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
                        memo=_memo(0, metrics, ufile_domains, elector.time_left, budget, ufile_insecure_http,
                                   scope=None if all_namespaces else tuple(namespaces)))  # /metrics: above
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
    p_run.add_argument("--ufile-insecure-http", action="store_true",
                       help="let the storage containers send UFile requests over plain HTTP (they get "
                            "--insecure-http); default HTTPS. Only for an endpoint without TLS (a local "
                            "stand-in): signatures and data can then be read and replayed on the way")
    p_run.add_argument("--kube-qps", type=float, default=ApiBudget.qps,
                       help=f"requests per second to the API server, on average (default {ApiBudget.qps:g})")
    p_run.add_argument("--kube-burst", type=int, default=ApiBudget.burst,
                       help=f"requests at once above --kube-qps (default {ApiBudget.burst})")
    p_run.add_argument("--progress-budget", type=float, default=ApiBudget.progress_rps, metavar="RPS",
                       help="requests per second the progress reads of running trainings may use in all; each "
                            f"training is read less often as their number grows (default {ApiBudget.progress_rps:g})")
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
    for namespace in args.namespace:  # a name: the Jobs' own watch is per namespace (kopf took patterns too)
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            parser.error(f"run: --namespace {namespace!r}: expected a namespace's name (lower-case letters, digits, "
                         "'-'; at most 63)")
    election = Election(args.lease_namespace, args.lease_name, args.identity) if args.leader_elect else None
    if args.kube_qps <= 0 or args.kube_burst < 1 or args.progress_budget <= 0:
        parser.error("run: --kube-qps and --progress-budget must be > 0, --kube-burst >= 1")
    budget = ApiBudget(args.kube_qps, args.kube_burst, args.progress_budget)
    return run(args.namespace, args.all_namespaces, args.liveness, args.verbose, args.metrics_port, election,
               args.log_format, args.ufile_domains, budget, args.ufile_insecure_http)
