"""train.py's command line: the reference flags and ours, and the checks of their values."""

from __future__ import annotations

import argparse
import os

from .cli import ArgumentParser, fail

DISTRIBUTIONS = ("auto", "off", "mirrored", "multi_worker")


class TrainError(Exception):
    """A problem with the user's input: reported in one line, exit status 1."""


def str2bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "t", "1", "yes", "y"):
        return True
    if v in ("false", "f", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def tristate(value: str) -> str:
    v = value.strip().lower()
    if v == "auto":
        return v
    return "true" if str2bool(v) else "false"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        # Read while the parser is built, before any flag: fail here, in one line.
        raise SystemExit(fail("train.py", f"environment {name}={raw!r} is not a number of seconds")) from None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser("train.py", "Train im2txt (Show and Tell).")
    ref = p.add_argument_group("reference flags (as in the UAI Train guide)")
    ref.add_argument("--input_file_pattern", required=True,
                     help="TFRecord glob(s) of SequenceExamples, comma-separated, e.g. train-?????-of-00256")
    ref.add_argument("--inception_checkpoint_file", default="",
                     help="TF-slim inception_v3.ckpt, loaded only at global step 0")
    ref.add_argument("--train_dir", required=True, help="where checkpoints and summaries go (and resume from)")
    ref.add_argument("--train_inception", type=str2bool, nargs="?", const=True, default=False,
                     help="stage 2: fine-tune InceptionV3 too")
    ref.add_argument("--number_of_steps", type=int, default=1000000,
                     help="absolute global-step target (stage 2 in the guide: 3000000)")
    ref.add_argument("--log_every_n_steps", type=int, default=1)
    own = p.add_argument_group("our flags (reference values by default)")
    own.add_argument("--save_interval_secs", type=float,
                     default=_env_float("IM2TXT_SAVE_INTERVAL_SECS", 600.0),
                     help="checkpoint interval (default: env IM2TXT_SAVE_INTERVAL_SECS or 600)")
    own.add_argument("--save_summaries_secs", type=float, default=_env_float("IM2TXT_SAVE_SUMMARIES_SECS", 600.0))
    own.add_argument("--max_checkpoints", type=int, default=5)
    own.add_argument("--batch_size", type=int, default=32)
    own.add_argument("--image_size", type=int, default=299, help="square crop size (resize by 346/299 first)")
    own.add_argument("--vocab_size", type=int, default=12000)
    own.add_argument("--embedding_size", type=int, default=512)
    own.add_argument("--num_lstm_units", type=int, default=512)
    own.add_argument("--initial_learning_rate", type=float, default=2.0)
    own.add_argument("--train_inception_learning_rate", type=float, default=0.0005)
    own.add_argument("--num_examples_per_epoch", type=int, default=586363)
    own.add_argument("--shuffle_buffer", type=int, default=0, help="0: the reference 2300*2 examples")
    own.add_argument("--precompute_embeddings", type=str2bool, nargs="?", const=True, default=False,
                     help="stage 1 only: run the frozen InceptionV3 once per image (central crop, no distortion)")
    own.add_argument("--embeddings_cache_dir", default="",
                     help="where --precompute_embeddings keeps its cache (default: env IM2TXT_EMBEDDINGS_CACHE or "
                          "$TMPDIR/im2txt-embeddings; not train_dir, which is uploaded)")
    own.add_argument("--jit_compile", type=tristate, default="auto", help="XLA for the image encoder (auto: GPU)")
    own.add_argument("--mixed_precision", type=tristate, default="auto",
                     help="bfloat16 InceptionV3 compute (auto: on Ampere+ GPUs)")
    own.add_argument("--seed", type=int, default=None)
    dist = p.add_argument_group("distribution (docs/trainer.md: one node, many GPUs; many nodes)")
    dist.add_argument("--distribution", choices=DISTRIBUTIONS, default=os.environ.get("IM2TXT_DISTRIBUTION", "auto"),
                      help="auto: MultiWorkerMirroredStrategy when TF_CONFIG (or IM2TXT_WORKER_HOSTS + "
                           "JOB_COMPLETION_INDEX) names several workers, else MirroredStrategy over this process's "
                           "GPUs when there are several, else one device (default: env IM2TXT_DISTRIBUTION or auto)")
    dist.add_argument("--cpu_devices", type=int, default=1,
                      help="split the CPU into N logical devices (replicas when there is no GPU: tests, benchmarks)")
    return p


def check_args(a: argparse.Namespace) -> None:
    for name in ("number_of_steps", "batch_size", "log_every_n_steps", "max_checkpoints", "vocab_size", "cpu_devices"):
        if getattr(a, name) < 1:
            raise TrainError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.distribution not in DISTRIBUTIONS:  # argparse does not check a default (env IM2TXT_DISTRIBUTION)
        raise TrainError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}, got {a.distribution!r}")
    if a.image_size < 75:
        raise TrainError(f"--image_size must be >= 75 (InceptionV3's minimum), got {a.image_size}")
    if a.save_interval_secs <= 0:
        raise TrainError(f"--save_interval_secs must be > 0, got {a.save_interval_secs}")


def check_train_dir(train_dir: str) -> None:
    try:
        os.makedirs(train_dir, exist_ok=True)
        probe = os.path.join(train_dir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise TrainError(f"--train_dir {train_dir!r} is not writable: {e.strerror or e}") from e
