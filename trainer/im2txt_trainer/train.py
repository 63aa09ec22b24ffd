"""train.py: the UAI Train command line over the TF2 Show and Tell port (reference im2txt/train.py).

    /data/train.py --input_file_pattern=/data/data/train-?????-of-00256 \
        --inception_checkpoint_file=/data/data/inception_v3.ckpt --train_dir=/data/output/ --number_of_steps=1000000
    /data/train.py --input_file_pattern=... --train_dir=/data/output/ --number_of_steps=3000000 --train_inception=True
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("im2txt_trainer.train")


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
        raise SystemExit(f"train.py: error: environment {name}={raw!r} is not a number of seconds") from None


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: argparse would otherwise take `--train_d=/elsewhere` for --train_dir, and the operator
    # reserves the reference flags (the Job sets them; extraArgs must not reach them under a shorter name).
    p = argparse.ArgumentParser(prog="train.py", description="Train im2txt (Show and Tell).", allow_abbrev=False)
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
    return p


def _check_args(a: argparse.Namespace) -> None:
    for name in ("number_of_steps", "batch_size", "log_every_n_steps", "max_checkpoints", "vocab_size"):
        if getattr(a, name) < 1:
            raise TrainError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.image_size < 75:
        raise TrainError(f"--image_size must be >= 75 (InceptionV3's minimum), got {a.image_size}")
    if a.save_interval_secs <= 0:
        raise TrainError(f"--save_interval_secs must be > 0, got {a.save_interval_secs}")


def _check_train_dir(train_dir: str) -> None:
    try:
        os.makedirs(train_dir, exist_ok=True)
        probe = os.path.join(train_dir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise TrainError(f"--train_dir {train_dir!r} is not writable: {e.strerror or e}") from e


class _Stop:
    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal = signum


def run(a: argparse.Namespace) -> int:
    _check_args(a)
    _check_train_dir(a.train_dir)
    stop = _Stop()
    # SIGTERM (the kubelet stopping the pod) and Ctrl-C end the current step, save, and exit 128+signal: the
    # target was not reached, so the Job must not count the pod as succeeded (its retry resumes from the save).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _train(a, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _train(a: argparse.Namespace, stop: _Stop) -> int:
    import tensorflow as tf

    from . import checkpoints, data, inception
    from .config import ModelConfig, TrainingConfig
    from .model import ShowAndTell
    from .steps import make_train_step

    try:
        files = data.match_files(a.input_file_pattern)
    except data.InputError as e:
        raise TrainError(str(e)) from e
    log.info("training on %d input files matching %s", len(files), a.input_file_pattern)

    gpus = tf.config.list_physical_devices("GPU")
    gpu = bool(gpus)
    # bfloat16 needs no loss scaling; only Ampere (compute capability 8.0) and later run it fast.
    bf16_gpu = bool(gpus) and all(
        tuple(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))) >= (8, 0)
        for g in gpus)
    mixed = a.mixed_precision == "true" or (a.mixed_precision == "auto" and bf16_gpu)
    jit = a.jit_compile == "true" or (a.jit_compile == "auto" and gpu)
    cfg = ModelConfig.for_image_size(a.image_size, vocab_size=a.vocab_size, embedding_size=a.embedding_size,
                                     num_lstm_units=a.num_lstm_units, batch_size=a.batch_size)
    tcfg = dataclasses.replace(TrainingConfig(), initial_learning_rate=a.initial_learning_rate,
                               train_inception_learning_rate=a.train_inception_learning_rate,
                               num_examples_per_epoch=a.num_examples_per_epoch,
                               max_checkpoints_to_keep=a.max_checkpoints)
    model = ShowAndTell(cfg, tcfg, seed=a.seed, encoder_dtype="mixed_bfloat16" if mixed else None)
    variables = model.named_variables()

    checkpoints.remove_partial(a.train_dir)
    try:
        restored = checkpoints.restore_latest(a.train_dir, variables)
    except checkpoints.CheckpointError as e:
        raise TrainError(f"--train_dir: {e}") from e
    if restored:
        # Stable wording: tests and users read it to see which checkpoint a stage (or retry) continued from.
        log.info("resumed from %s at global step %d", restored, int(model.global_step.numpy()))
    else:
        path = a.inception_checkpoint_file
        if not path:
            raise TrainError("--inception_checkpoint_file is required at global step 0 "
                             f"(no checkpoint in --train_dir {a.train_dir!r})")
        if not (os.path.exists(path) or os.path.exists(path + ".index")):
            raise TrainError(f"--inception_checkpoint_file {path!r} not found (needed at global step 0: "
                             f"no checkpoint in --train_dir {a.train_dir!r})")
        try:
            n = inception.load_slim_checkpoint(model.encoder, path)
        except inception.CheckpointImportError as e:
            raise TrainError(str(e)) from e
        log.info("initialised %d InceptionV3 variables from %s", n, path)

    step = int(model.global_step.numpy())
    if step >= a.number_of_steps:
        log.info("global step %d already reached --number_of_steps=%d; nothing to do", step, a.number_of_steps)
        return 0

    if a.precompute_embeddings and not a.train_inception:
        from .embeddings import embedding_dataset
        ds = embedding_dataset(model, files, cfg, seed=a.seed, shuffle_buffer=a.shuffle_buffer or None, jit=jit,
                               cache_dir=a.embeddings_cache_dir or None)
    else:
        ds = data.caption_dataset(files, cfg, is_training=True, seed=a.seed, shuffle_buffer=a.shuffle_buffer or None)
    train_step = make_train_step(model, a.train_inception, precomputed=a.precompute_embeddings and
                                 not a.train_inception, jit=jit)
    saver = checkpoints.Saver(a.train_dir, variables, a.save_interval_secs, a.max_checkpoints)
    saver.last_step = step if restored else None  # that checkpoint exists already
    writer = tf.summary.create_file_writer(a.train_dir)
    iterator = iter(ds)
    last_summary = time.monotonic()
    log.info("training %s from global step %d to %d (batch %d, image %d, jit=%s, mixed_precision=%s)",
             "stage 2 (InceptionV3 trains)" if a.train_inception else "stage 1", step, a.number_of_steps,
             a.batch_size, a.image_size, jit, mixed)

    while step < a.number_of_steps and stop.signal is None:
        t0 = time.monotonic()
        try:
            batch = next(iterator)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            if step > 0:
                saver.save(step)
            msg = getattr(e, "message", str(e)).splitlines()[0]
            raise TrainError(f"corrupt input record in --input_file_pattern {a.input_file_pattern!r}: {msg}") from e
        try:
            batch_loss, total_loss, lr = train_step(*batch)
        except tf.errors.InvalidArgumentError as e:
            msg = getattr(e, "message", str(e)).splitlines()[0]
            raise TrainError(f"bad input batch (are all caption ids < --vocab_size={a.vocab_size}?): {msg}") from e
        step = int(model.global_step.numpy())
        dt = time.monotonic() - t0
        if step % a.log_every_n_steps == 0:
            log.info("global step %d: loss = %.4f (%.3f sec/step)", step, float(total_loss), dt)
        if time.monotonic() - last_summary >= a.save_summaries_secs or step >= a.number_of_steps:
            with writer.as_default(step=step):
                tf.summary.scalar("losses/batch_loss", batch_loss)
                tf.summary.scalar("losses/total_loss", total_loss)
                tf.summary.scalar("learning_rate", lr)
                tf.summary.scalar("global_step/sec", 1.0 / max(dt, 1e-9))
                tf.summary.scalar("examples/sec", a.batch_size / max(dt, 1e-9))
            writer.flush()
            last_summary = time.monotonic()
        if saver.due():
            saver.save(step)

    saver.save(step)
    writer.close()
    if stop.signal is not None:
        log.info("stopped by signal %d at global step %d; checkpoint saved", stop.signal, step)
        return 128 + stop.signal
    log.info("reached global step %d", step)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        return run(args)
    except TrainError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
