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
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .distribute import Placement
    from .model import ShowAndTell

log = logging.getLogger("im2txt_trainer.train")
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
    dist = p.add_argument_group("distribution (docs/trainer.md: one node, many GPUs; many nodes)")
    dist.add_argument("--distribution", choices=DISTRIBUTIONS, default=os.environ.get("IM2TXT_DISTRIBUTION", "auto"),
                      help="auto: MultiWorkerMirroredStrategy when TF_CONFIG (or IM2TXT_WORKER_HOSTS + "
                           "JOB_COMPLETION_INDEX) names several workers, else MirroredStrategy over this process's "
                           "GPUs when there are several, else one device (default: env IM2TXT_DISTRIBUTION or auto)")
    dist.add_argument("--cpu_devices", type=int, default=1,
                      help="split the CPU into N logical devices (replicas when there is no GPU: tests, benchmarks)")
    return p


def _check_args(a: argparse.Namespace) -> None:
    for name in ("number_of_steps", "batch_size", "log_every_n_steps", "max_checkpoints", "vocab_size", "cpu_devices"):
        if getattr(a, name) < 1:
            raise TrainError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.distribution not in DISTRIBUTIONS:  # argparse does not check a default (env IM2TXT_DISTRIBUTION)
        raise TrainError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}, got {a.distribution!r}")
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
    stop = _Stop()
    # SIGTERM (the kubelet stopping the pod) and Ctrl-C end the current step, save, and exit 128+signal: the
    # target was not reached, so the Job must not count the pod as succeeded (its retry resumes from the save).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _train(a, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _restore_or_initialise(a: argparse.Namespace, model: ShowAndTell, variables: dict) -> str | None:
    """The newest checkpoint in train_dir, else (global step 0) InceptionV3 from the slim file."""
    from . import checkpoints, inception

    checkpoints.remove_partial(a.train_dir)
    try:
        restored = checkpoints.restore_latest(a.train_dir, variables)
    except checkpoints.CheckpointError as e:
        raise TrainError(f"--train_dir: {e}") from e
    if restored:
        # Stable wording: tests and users read it to see which checkpoint a stage (or retry) continued from.
        log.info("resumed from %s at global step %d", restored, int(model.global_step.numpy()))
        return restored
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
    return None


def _place(a: argparse.Namespace) -> Placement:
    """TF_CONFIG (or the Indexed Job's variables) -> the strategy; first, before TensorFlow sets up devices."""
    from . import cluster

    try:
        tf_config = cluster.ensure_tf_config(os.environ)
        from . import distribute

        placement = distribute.place(a.distribution, a.cpu_devices, tf_config)
    except (cluster.ClusterError, ValueError) as e:
        raise TrainError(str(e)) from e
    if a.batch_size % placement.replicas:
        raise TrainError(f"--batch_size={a.batch_size} is the global batch and must divide evenly over "
                         f"{placement.replicas} replicas")
    return placement


def _train(a: argparse.Namespace, stop: _Stop) -> int:
    import tensorflow as tf

    placement = _place(a)
    chief = placement.is_chief
    write_dir = a.train_dir if chief else tempfile.mkdtemp(prefix=f"im2txt-worker{placement.worker_index}-")
    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError)
    try:
        return _train_placed(a, stop, placement, write_dir)
    except lost as e:
        if not placement.multi_worker:
            raise
        # A collective failed: a worker died or cannot be reached. The step in flight may have half-updated the
        # batch-norm statistics, so nothing is saved; the stage restarts as a whole from the last checkpoint.
        log.warning("collective failure: %s", getattr(e, "message", e))
        raise TrainError(f"lost another worker ({type(e).__name__}); no checkpoint of the step in flight, the "
                         "stage resumes from the last one") from e
    finally:
        if not chief:  # the standard pattern: only the chief's checkpoints and summaries are kept
            shutil.rmtree(write_dir, ignore_errors=True)


def _train_placed(a: argparse.Namespace, stop: _Stop, placement: Placement, write_dir: str) -> int:
    import tensorflow as tf

    from . import checkpoints, data, distribute, embeddings
    from .config import ModelConfig, TrainingConfig
    from .model import ShowAndTell
    from .steps import make_train_step

    chief, strategy = placement.is_chief, placement.strategy
    # In a multi-worker run a worker's setup error must reach the others (they would wait for it in the next
    # collective), so it is held until every worker has said whether its setup worked.
    problem: TrainError | None = None
    files: list[str] = []
    try:
        files = data.match_files(a.input_file_pattern)
        if chief:
            _check_train_dir(a.train_dir)
    except data.InputError as e:
        problem = TrainError(str(e))
    except TrainError as e:
        problem = e
    if problem and not placement.multi_worker:
        raise problem
    if files:
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
    with strategy.scope():
        model = ShowAndTell(cfg, tcfg, seed=a.seed, encoder_dtype="mixed_bfloat16" if mixed else None)
    variables = model.named_variables()

    restored = None
    if chief and problem is None:  # only the chief reads train_dir; the others get its values below
        try:
            restored = _restore_or_initialise(a, model, variables)
        except TrainError as e:
            problem = e
    if placement.any_worker(problem is not None):
        raise problem or TrainError("another worker failed to start (see the log of worker 0 and the others)")
    distribute.broadcast_from_chief(placement, list(variables.values()))
    step = int(model.global_step.numpy())
    if placement.multi_worker and not chief:
        log.info("worker %d of %d: took the chief's values at global step %d", placement.worker_index,
                 placement.num_workers, step)
    if step >= a.number_of_steps:
        log.info("global step %d already reached --number_of_steps=%d; nothing to do", step, a.number_of_steps)
        return 0

    precomputed = a.precompute_embeddings and not a.train_inception
    cache = (embeddings.precompute(model, files, cfg, embeddings.cache_dir_or_default(a.embeddings_cache_dir),
                                   jit=jit) if precomputed else "")

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # One input pipeline per worker, batched per replica; each reads its own shard in its own order.
        rcfg = dataclasses.replace(cfg, batch_size=ctx.get_per_replica_batch_size(a.batch_size))
        shard = (ctx.num_input_pipelines, ctx.input_pipeline_id)
        seed = None if a.seed is None else a.seed + ctx.input_pipeline_id
        if precomputed:
            return embeddings.cached_dataset(cache, int(model.image_embedding.shape[0]), rcfg, seed=seed,
                                             shuffle_buffer=a.shuffle_buffer or None, shard=shard)
        return data.caption_dataset(files, rcfg, is_training=True, seed=seed, shuffle_buffer=a.shuffle_buffer or None,
                                    shard=shard)

    ds = strategy.distribute_datasets_from_function(dataset_fn)
    train_step = make_train_step(model, a.train_inception, precomputed=precomputed, jit=jit, strategy=strategy,
                                 element_spec=ds.element_spec)
    saver = checkpoints.Saver(write_dir, variables, a.save_interval_secs, a.max_checkpoints)
    saver.last_step = step if restored or not chief else None  # that checkpoint exists already
    writer = tf.summary.create_file_writer(write_dir)
    iterator = iter(ds)
    last_summary = time.monotonic()
    log.info("training %s from global step %d to %d (global batch %d on %d replica(s), %s; image %d, jit=%s, "
             "mixed_precision=%s)", "stage 2 (InceptionV3 trains)" if a.train_inception else "stage 1", step,
             a.number_of_steps, a.batch_size, placement.replicas, placement.kind, a.image_size, jit, mixed)
    if a.batch_size != 32:
        log.info("learning rate %g (stage 1) / %g (stage 2) for a global batch of %d: the reference tuned its "
                 "rates for 32; scale them yourself with --initial_learning_rate/--train_inception_learning_rate",
                 a.initial_learning_rate, a.train_inception_learning_rate, a.batch_size)

    stopped = False
    while step < a.number_of_steps:
        if placement.any_worker(stop.signal is not None):  # every worker stops at the same step
            stopped = True
            break
        t0 = time.monotonic()
        try:
            batch = next(iterator)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            if step > 0:
                saver.save(step)
            msg = getattr(e, "message", str(e)).splitlines()[0]
            raise TrainError(f"corrupt input record in --input_file_pattern {a.input_file_pattern!r}: {msg}") from e
        try:
            batch_loss, total_loss, lr = train_step(batch)
        except tf.errors.InvalidArgumentError as e:
            msg = getattr(e, "message", str(e)).splitlines()[0]
            raise TrainError(f"bad input batch (are all caption ids < --vocab_size={a.vocab_size}?): {msg}") from e
        step = int(model.global_step.numpy())
        dt = time.monotonic() - t0
        if chief and step % a.log_every_n_steps == 0:  # the operator reads progress from these lines
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
    if stopped:
        signum = stop.signal or signal.SIGTERM
        log.info("stopped by signal %d%s at global step %d; checkpoint saved", signum,
                 "" if stop.signal else " to another worker", step)
        return 128 + signum
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
