"""Trainer scaling benchmark: examples/sec of the MirroredStrategy step on 1, 2, 4, 8 replicas, per stage.

    python bench/trainer_scaling.py [--replicas 1,2,4,8] [--steps 3] [--per-replica-batch 4] [--image-size 75]

Weak scaling: each replica keeps its batch, so N replicas step a global batch N times larger. Baseline: one
replica (one device, no strategy), measured in the same run; efficiency = ex/s(N) / (N x ex/s(1)). Each
configuration runs in its own process, since logical devices must be set up before TensorFlow starts. Without a
GPU the replicas are logical CPU devices sharing the same cores: N replicas cannot then go faster than one, and
the table shows the cost of distributing (all-reduces, synchronised batch norm, N input shards), not GPU scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# The trainer package, for this script and its per-configuration subprocesses (bench code is not part of it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))


def measure(stage: int, replicas: int, steps: int, per_replica_batch: int, size: int) -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    from im2txt_trainer.config import ModelConfig
    from im2txt_trainer.model import ShowAndTell
    from im2txt_trainer.steps import make_train_step

    devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")][:replicas]
    if len(devices) < replicas:
        raise SystemExit(f"only {len(devices)} devices for {replicas} replicas")
    strategy = tf.distribute.MirroredStrategy(devices) if replicas > 1 else tf.distribute.get_strategy()
    vocab, length, b = 12000, 14, per_replica_batch
    cfg = ModelConfig.for_image_size(size, batch_size=b * replicas, vocab_size=vocab)
    with strategy.scope():
        model = ShowAndTell(cfg)
    g = tf.random.Generator.from_seed(0)
    ids = g.uniform([b, length], 0, vocab, dtype=tf.int64)
    one = (g.uniform([b, size, size, 3], -1, 1), ids, tf.roll(ids, -1, 1), tf.ones([b, length], tf.int32))
    ds = strategy.distribute_datasets_from_function(lambda ctx: tf.data.Dataset.from_tensors(one).repeat())
    step = make_train_step(model, stage == 2, strategy=strategy, element_spec=ds.element_spec)
    it = iter(ds)
    t0 = time.perf_counter()
    float(step(next(it))[1])  # warm-up: tracing and graph optimisation
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(next(it))
    float(out[1])
    dt = (time.perf_counter() - t0) / steps
    return {"stage": stage, "replicas": replicas, "global_batch": b * replicas, "sec_per_step": dt,
            "examples_per_sec": b * replicas / dt, "warmup_sec": build, "device": "GPU" if gpus else "CPU"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/trainer_scaling.py", allow_abbrev=False,
                                description=__doc__.splitlines()[0])
    p.add_argument("--replicas", default=os.environ.get("BENCH_REPLICAS", "1,2,4,8"))
    p.add_argument("--stages", default="1,2")
    p.add_argument("--steps", type=int, default=int(os.environ.get("BENCH_STEPS", "3")))
    p.add_argument("--per-replica-batch", type=int, default=4)
    p.add_argument("--image-size", type=int, default=75, help="75: InceptionV3's smallest input, keeps it quick")
    p.add_argument("--only", help=argparse.SUPPRESS)  # "stage,replicas": one measurement, JSON on stdout
    a = p.parse_args(argv)
    if a.only:
        stage, replicas = map(int, a.only.split(","))
        print(json.dumps(measure(stage, replicas, a.steps, a.per_replica_batch, a.image_size)))
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    results: dict[tuple[int, int], dict] = {}
    for stage in map(int, a.stages.split(",")):
        for replicas in map(int, a.replicas.split(",")):
            proc = subprocess.run([sys.executable, __file__, "--only",
                                   f"{stage},{replicas}", "--steps", str(a.steps), "--per-replica-batch",
                                   str(a.per_replica_batch), "--image-size", str(a.image_size)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"stage {stage} x{replicas}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = results[stage, replicas] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  stage {stage} x{replicas}: {r['examples_per_sec']:7.2f} ex/s (warm-up {r['warmup_sec']:.0f} s)",
                  file=sys.stderr)
    if not results:
        return 1
    device = next(iter(results.values()))["device"]
    where = ("GPUs" if device == "GPU" else
             f"logical CPU devices sharing {os.cpu_count()} CPU cores (no GPU here: ideal is a flat ex/s, "
             "efficiency 1/N; the gap shows the cost of distributing)")
    print(f"\ntrainer scaling: MirroredStrategy, {a.per_replica_batch} examples per replica, "
          f"{a.image_size}x{a.image_size}, {a.steps} timed steps after 1 warm-up; replicas are {where}")
    print("| stage | replicas | global batch | ex/s    | s/step | vs 1 replica | efficiency vs N x 1 replica |")
    print("|-------|----------|--------------|---------|--------|--------------|-----------------------------|")
    for (stage, replicas), r in results.items():
        base = results.get((stage, 1))
        ratio = r["examples_per_sec"] / base["examples_per_sec"] if base else float("nan")
        print(f"| {stage:5d} | {replicas:8d} | {r['global_batch']:12d} | {r['examples_per_sec']:7.2f} | "
              f"{r['sec_per_step']:6.2f} | {ratio:11.2f}x | {ratio / replicas:27.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
