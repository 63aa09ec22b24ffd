"""Operator benchmark (``make bench-operator``): N concurrent trainings against the API emulator.

For N = 50 and 200, for the operator and for the minimal raw-watch reactor (operator_reactor.py, measured in
the same run on the same emulator): p50/p99 from a training's creation to its stage-1 Job, and from stage
1's Job completing to stage 2's Job; API writes per stage transition; peak RSS of the process. Targets:
p99 < 1 s at N = 200, RSS < 120 MiB, <= 3 writes per transition.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The operator tier's harness (the emulator in-process, the operator as a subprocess) drives the runs.
sys.path[:0] = [str(ROOT / "tests" / "operator"), str(ROOT / "operator"), str(ROOT / "standins")]

from harness import JOBS, complete_job, emulator, new_training, wait_for  # noqa: E402

from im2txt_standins.kube_api import KubeAPI  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _start(kind: str, api: KubeAPI, kubeconfig: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "IM2TXT_PROGRESS_INTERVAL": "30",
           "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("operator", "standins"))}
    if kind == "operator":
        cmd = [sys.executable, "-m", "im2txt_operator", "run", "--all-namespaces", "--liveness=",
               "--metrics-port=0"]
        if os.environ.get("BENCH_PROFILE"):  # e.g. BENCH_PROFILE=/tmp/operator.prof: where the time goes
            cmd[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    else:
        cmd = [sys.executable, str(HERE / "operator_reactor.py"), api.url]
    return await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)


async def run_one(kind: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with emulator(Path(tmp)) as api:
            proc = await _start(kind, api, Path(tmp) / "kubeconfig")
            try:
                ns = "bench"
                # Warm up: the watches are up once a first training gets its Job.
                new_training(api, "warmup", ns=ns)
                await wait_for(lambda: api.get_object(JOBS, ns, "warmup-stage1"), timeout=60, what="warm-up")
                await asyncio.sleep(0.5)
                names = [f"t{i:04d}" for i in range(n)]
                created = {}
                for name in names:
                    new_training(api, name, ns=ns)
                    created[name] = time.monotonic()
                await wait_for(lambda: all((JOBS, ns, f"{m}-stage1") in api.created_at for m in names), timeout=120,
                               what="stage-1 Jobs")
                to_job = [api.created_at[(JOBS, ns, f"{m}-stage1")] - created[m] for m in names]
                await asyncio.sleep(1.0)  # let status patches and events settle before counting
                writes_before = sum(api.writes.values())
                completed = {}
                for name in names:
                    complete_job(api, f"{name}-stage1", ns=ns)
                    completed[name] = time.monotonic()
                await wait_for(lambda: all((JOBS, ns, f"{m}-stage2") in api.created_at for m in names), timeout=120,
                               what="stage-2 Jobs")
                to_next = [api.created_at[(JOBS, ns, f"{m}-stage2")] - completed[m] for m in names]
                await asyncio.sleep(2.0)
                writes = (sum(api.writes.values()) - writes_before) / n
                rss = _peak_rss_mib(proc.pid)
            finally:
                proc.terminate()
                await proc.wait()
    return {"create_p50": _pct(to_job, 0.5), "create_p99": _pct(to_job, 0.99), "next_p50": _pct(to_next, 0.5),
            "next_p99": _pct(to_next, 0.99), "writes": writes, "rss": rss}


async def main(sizes: list[int]) -> None:
    rows = []
    for n in sizes:
        base = await run_one("reactor", n) if not os.environ.get("BENCH_PROFILE") else await run_one("operator", 1)
        op = await run_one("operator", n)
        rows.append((n, base, op))
    ms = 1000.0
    print("\noperator benchmark (API emulator in-process; times in ms; ratio = operator / raw-watch reactor)")
    header = (f"{'N':>4} {'impl':<9} {'create p50':>10} {'create p99':>10} {'next p50':>9} {'next p99':>9} "
              f"{'writes/trans':>12} {'peak RSS MiB':>12}")
    print(header)
    print("-" * len(header))
    for n, base, op in rows:
        for label, r in (("reactor", base), ("operator", op)):
            print(f"{n:>4} {label:<9} {r['create_p50'] * ms:>10.1f} {r['create_p99'] * ms:>10.1f} "
                  f"{r['next_p50'] * ms:>9.1f} {r['next_p99'] * ms:>9.1f} {r['writes']:>12.2f} {r['rss']:>12.1f}")
        ratio = {k: op[k] / base[k] if base[k] else float("nan") for k in op}
        print(f"{n:>4} {'ratio':<9} {ratio['create_p50']:>10.2f} {ratio['create_p99']:>10.2f} "
              f"{ratio['next_p50']:>9.2f} {ratio['next_p99']:>9.2f} {ratio['writes']:>12.2f} {ratio['rss']:>12.2f}")
    n, _, op = rows[-1]
    worst = max(op["create_p99"], op["next_p99"])
    print(f"\ntargets at N={n}: p99 < 1000 ms: {worst * ms:.0f} ms {'OK' if worst < 1 else 'MISSED'}; "
          f"RSS < 120 MiB: {op['rss']:.0f} MiB {'OK' if op['rss'] < 120 else 'MISSED'}; "
          f"<= 3 writes/transition: {op['writes']:.2f} {'OK' if op['writes'] <= 3 else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, action="append", help="trainings per run (default: 50 and 200)")
    args = parser.parse_args()
    asyncio.run(main(args.n or [50, 200]))
