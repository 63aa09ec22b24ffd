"""Evaluation benchmark: the trainer's sec/step alone and while the evaluation loop runs beside it.

    python bench/evaluation_overhead.py [--rounds 2] [--steps 30] [--image-size 150] [--batch 8]
        [--trainer-cpus 0 --eval-cpus 1]

`train.py` trains stage 1 on a synthetic dataset (real record format) with a checkpoint every few seconds;
`eval_loop` evaluates each new checkpoint as soon as it appears (no interval), reading the same train_dir, so it
is always busy: the worst case of the operator's default (one evaluation per 10 minutes). Configurations:
- baseline: the trainer alone, on `--trainer-cpus`;
- own pod (the operator's placement): the evaluation on its own CPUs (`--eval-cpus`), as its own pod with its own
  CPU request gets them, and no GPU; what is left is what they share: the train_dir's disk, memory bandwidth;
- same CPUs (for comparison, what a sidecar without CPUs of its own would cost): both on `--trainer-cpus`.
Each configuration runs `--rounds` times, alternating, and the median sec/step of the trainer's log lines
between warm-up and `--steps` is reported; ratio = baseline sec/step / this sec/step (1.00x: no slowdown). The
trainer's CPU seconds per step (from /proc) are reported too: on a machine shared with other work the wall time
also counts the time other processes held the trainer's CPU, the CPU time does not.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINER = Path(__file__).resolve().parents[1] / "trainer"
STEP = re.compile(r"global step (\d+): loss = \S+ \(([\d.]+) sec/step\)")


def _env() -> dict[str, str]:
    # No GPU for the evaluation, as the operator's pod has none by default; quiet TensorFlow.
    return {**os.environ, "PYTHONPATH": str(TRAINER), "TF_CPP_MIN_LOG_LEVEL": "2", "IM2TXT_SAVE_INTERVAL_SECS": "5"}


def _pinned(cpus: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def train_flags(data: Path, td: Path, a: argparse.Namespace, steps: int) -> list[str]:
    return [f"--input_file_pattern={data}/train-*", f"--train_dir={td}", f"--image_size={a.image_size}",
            f"--batch_size={a.batch}", f"--number_of_steps={steps}",
            f"--inception_checkpoint_file={data}/inception_v3.ckpt"]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_trainer(data: Path, td: Path, a: argparse.Namespace, start: int) -> tuple[float, float]:
    """(median wall s/step the trainer logs, its CPU seconds per step) over `a.steps` steps after `a.warmup`."""
    first, last = start + a.warmup, start + a.warmup + a.steps
    cmd = _pinned(a.trainer_cpus, [sys.executable, str(TRAINER / "train.py"), *train_flags(data, td, a, last)])
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)  # taskset execs: the same pid
    times: list[float] = []
    cpu0 = cpu1 = 0.0
    for line in proc.stderr:
        m = STEP.search(line)
        if not m:
            continue
        step = int(m[1])
        if step == first:
            cpu0 = _cpu_seconds(proc.pid)
        elif first < step <= last:
            times.append(float(m[2]))
            if step == last:
                cpu1 = _cpu_seconds(proc.pid)
    if proc.wait() or len(times) != a.steps:
        raise SystemExit(f"train.py failed (exit {proc.returncode}, {len(times)} timed steps)")
    return statistics.median(times), (cpu1 - cpu0) / a.steps


def start_eval(data: Path, td: Path, a: argparse.Namespace, cpus: str) -> subprocess.Popen:
    cmd = _pinned(cpus, [sys.executable, "-m", "im2txt_trainer.eval_loop", f"--checkpoint_dir={td}",
                         f"--eval_dir={td}/eval", f"--input_file_pattern={data}/val-*", f"--image_size={a.image_size}",
                         "--min_global_step=0", "--eval_interval_secs=0.01", "--poll_secs=0.5", "--batch_size=8"])
    return subprocess.Popen(cmd, env={**_env(), "CUDA_VISIBLE_DEVICES": ""}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def wait_first_result(proc: subprocess.Popen) -> None:
    """The evaluation is warm (TensorFlow imported, one checkpoint evaluated) before the trainer is timed."""
    for line in proc.stdout:
        if line.startswith("evaluation: "):
            os.set_blocking(proc.stdout.fileno(), False)  # later results are not read: do not block on them
            return
    raise SystemExit("eval_loop ended before its first result")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/evaluation_overhead.py", allow_abbrev=False,
                                description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "2")))
    p.add_argument("--steps", type=int, default=int(os.environ.get("BENCH_EVAL_STEPS", "30")))
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--image-size", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--trainer-cpus", default="0")
    p.add_argument("--eval-cpus", default="1")
    a = p.parse_args(argv)
    sys.path.insert(0, str(TRAINER))
    from im2txt_trainer import synthetic

    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        data, td = Path(tmp, "data"), Path(tmp, "train")
        synthetic.write_dataset(str(data), images=40, image_size=a.image_size, seed=1)
        step = 1  # one checkpoint to start from, so the evaluation has work before the first timed run
        subprocess.run([sys.executable, str(TRAINER / "train.py"), *train_flags(data, td, a, step)], env=_env(),
                       capture_output=True, check=True)
        configs = {"baseline": None, "own pod": a.eval_cpus, "same CPUs": a.trainer_cpus}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        started = time.monotonic()
        for _ in range(a.rounds):
            for name, cpus in configs.items():
                evaluation = start_eval(data, td, a, cpus) if cpus is not None else None
                try:
                    if evaluation:
                        wait_first_result(evaluation)
                    results[name].append(run_trainer(data, td, a, step))
                finally:
                    if evaluation:
                        evaluation.terminate()
                        evaluation.wait(timeout=120)
                step += a.warmup + a.steps
        base = statistics.median(w for w, _ in results["baseline"])
        base_cpu = statistics.median(c for _, c in results["baseline"])
        print(f"\nimage {a.image_size}x{a.image_size}, batch {a.batch}, {a.steps} timed steps x {a.rounds} rounds, "
              f"trainer on CPUs {a.trainer_cpus}; {time.monotonic() - started:.0f}s; load average "
              f"{os.getloadavg()[0]:.2f}\n")
        print("| configuration | evaluation on CPUs | trainer s/step (median) | each round | vs baseline "
              "| trainer CPU s/step | vs baseline |")
        print("|---|---|---|---|---|---|---|")
        for name, cpus in configs.items():
            wall = statistics.median(w for w, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            rounds = " ".join(f"{w:.3f}" for w, _ in results[name])
            print(f"| {name} | {cpus or '-'} | {wall:.3f} | {rounds} | {base / wall:.2f}x | {cpu:.3f} "
                  f"| {base_cpu / cpu:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
