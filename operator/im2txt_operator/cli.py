"""``python -m im2txt_operator run|render``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

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
    """Print the Jobs the operator would create for each training in the files (offline, no cluster)."""
    from im2txt_operator.jobs import Owner, build_job
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
                    jobs += [build_job(owner, settings, s) for s in settings.stages()]
                except SpecError as e:
                    print(f"{path}: {name}: {e}", file=sys.stderr)
                    return 2
    if not jobs:
        print("no Im2txtTraining found", file=sys.stderr)
        return 2
    yaml.safe_dump_all(jobs, out, sort_keys=False, default_flow_style=False)
    return 0


def run(namespaces: Sequence[str], all_namespaces: bool, liveness: str | None, verbose: bool,
        metrics_port: int = 9090) -> int:
    import os

    os.environ["IM2TXT_METRICS_PORT"] = str(metrics_port)  # read by the handlers module at import
    import kopf

    import im2txt_operator.handlers  # noqa: F401 - registers the handlers

    kopf.configure(verbose=verbose)
    if not verbose:  # quiet by default: one line per transition from us, not one per event from kopf
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=list(namespaces),
             liveness_endpoint=liveness or None)
    return 0


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
    p_render = sub.add_parser("render", help="print the Jobs a training would get (offline)")
    p_render.add_argument("files", nargs="+", help="YAML files with Im2txtTraining resources ('-' for stdin)")
    args = parser.parse_args(argv)
    if args.command == "render":
        return render(args.files)
    if not args.namespace and not args.all_namespaces:
        parser.error("run: give --namespace NS or --all-namespaces")
    return run(args.namespace, args.all_namespaces, args.liveness, args.verbose, args.metrics_port)
