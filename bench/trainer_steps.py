"""Trainer benchmark: examples/sec for stage 1 and stage 2 against bare InceptionV3 floors.

    python bench/trainer_steps.py [--steps 3] [--batch 32] [--image-size 299]

Each configuration runs in its own process (clean peak memory), on random in-memory batches, after one
warm-up step. Floors: bare Keras InceptionV3 forward (stage 1: every example needs one) and forward+backward
(stage 2). Baseline: the same Show and Tell step run eagerly, without tf.function. `pipeline` is the tf.data
input pipeline alone (JPEG decode + reference preprocessing), which must outrun the step. Targets: docs/design.md,
"Performance yardsticks".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The trainer package, for this script and its per-configuration subprocesses (bench code is not part of it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))

CONFIGS = {
    "floor_forward": "bare keras.applications.InceptionV3 forward (stage-1 floor)",
    "floor_fwd_bwd": "bare InceptionV3 forward+backward (stage-2 floor)",
    "stage1_eager": "stage 1 step, plain eager (baseline)",
    "stage1": "stage 1 step, tf.function (default)",
    "stage1_xla": "stage 1 step, tf.function + XLA encoder",
    "stage1_precomputed": "stage 1 step on precomputed embeddings (option)",
    "stage2_eager": "stage 2 step, plain eager (baseline)",
    "stage2": "stage 2 step, tf.function (default)",
    "pipeline": "tf.data input pipeline alone (decode + preprocess)",
}


def _batch(batch: int, size: int, vocab: int, length: int = 14):
    import tensorflow as tf

    g = tf.random.Generator.from_seed(0)
    images = g.uniform([batch, size, size, 3], -1, 1)
    ids = g.uniform([batch, length], 0, vocab, dtype=tf.int64)
    return images, ids, tf.roll(ids, -1, 1), tf.ones([batch, length], tf.int32)


def measure(name: str, steps: int, batch: int, size: int) -> dict:
    import keras
    import tensorflow as tf

    from im2txt_trainer.config import ModelConfig
    from im2txt_trainer.model import ShowAndTell
    from im2txt_trainer.steps import make_train_step

    vocab = 12000
    images, ids, targets, mask = _batch(batch, size, vocab)
    if name.startswith("floor"):
        net = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))
        if name == "floor_forward":
            fn = tf.function(lambda x: net(x, training=False))
        else:
            @tf.function
            def fn(x):
                with tf.GradientTape() as tape:
                    y = tf.reduce_sum(net(x, training=True))
                return tape.gradient(y, net.trainable_variables)
        run = lambda: fn(images)  # noqa: E731
    elif name == "pipeline":
        from im2txt_trainer import data, synthetic

        tmp = tempfile.TemporaryDirectory(prefix="im2txt-bench-")  # removed when the process exits
        info = synthetic.write_dataset(tmp.name, images=64, image_size=640, inception=False)
        cfg = ModelConfig.for_image_size(size, batch_size=batch, vocab_size=vocab)
        it = iter(data.caption_dataset(info["splits"]["train"], cfg, is_training=True, shuffle_buffer=64))
        run = lambda: next(it)  # noqa: E731
    else:
        stage2 = name.startswith("stage2")
        model = ShowAndTell(ModelConfig.for_image_size(size, batch_size=batch, vocab_size=vocab))
        pre = name.endswith("precomputed")
        step = make_train_step(model, stage2, precomputed=pre, jit=name.endswith("xla"))
        if name.endswith("eager"):
            tf.config.run_functions_eagerly(True)
        first = tf.random.uniform([batch, 2048]) if pre else images
        run = lambda: step((first, ids, targets, mask))  # noqa: E731
    out = run()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)  # warm-up (tracing)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = run()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    dt = (time.perf_counter() - t0) / steps
    return {"name": name, "sec_per_step": dt, "examples_per_sec": batch / dt,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/trainer_steps.py", allow_abbrev=False,
                                description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=int(os.environ.get("BENCH_STEPS", "3")))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=299)
    p.add_argument("--only", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--configs", default=",".join(CONFIGS))
    a = p.parse_args(argv)
    if a.only:
        print(json.dumps(measure(a.only, a.steps, a.batch, a.image_size)))
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = {}
    for name in a.configs.split(","):
        proc = subprocess.run([sys.executable, __file__, "--only", name, "--steps", str(a.steps),
                               "--batch", str(a.batch), "--image-size", str(a.image_size)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {name:14s} {results[name]['examples_per_sec']:8.2f} ex/s", file=sys.stderr)
    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"\ntrainer benchmark: batch {a.batch}, {a.image_size}x{a.image_size}, {a.steps} timed steps after "
          f"1 warm-up, {device}; a shared machine: expect ±15% noise")
    print(f"| {'configuration':60s} | ex/s   | s/step | peak RSS MiB | vs floor | vs eager |")
    print(f"|{'-' * 62}|--------|--------|--------------|----------|----------|")
    for name, r in results.items():
        floor = results.get("floor_fwd_bwd" if name.startswith("stage2") else "floor_forward")
        eager = results.get(f"{name.split('_')[0]}_eager")
        vs_floor = f"{r['examples_per_sec'] / floor['examples_per_sec']:.2f}x" if floor and name.startswith(
            "stage") else ""
        vs_eager = f"{r['examples_per_sec'] / eager['examples_per_sec']:.2f}x" if eager and name.startswith(
            "stage") and not name.endswith("eager") else ""
        print(f"| {CONFIGS[name]:60s} | {r['examples_per_sec']:6.2f} | {r['sec_per_step']:6.2f} | "
              f"{r['peak_rss_mib']:12.0f} | {vs_floor:>8s} | {vs_eager:>8s} |")
    print("targets: stage 1 >= 0.85x forward floor, stage 2 >= 0.80x forward+backward floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
