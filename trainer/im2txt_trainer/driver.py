"""The training driver: place the run, build the model, restore or initialise it, then loop to the target step."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import tempfile
import time
from typing import Any

import tensorflow as tf

from . import checkpoints, cluster, data, distribute, embeddings, inception, termination
from .config import ModelConfig, TrainingConfig
from .distribute import Placement
from .flags import TrainError, check_train_dir
from .model import ShowAndTell
from .steps import make_train_step

log = logging.getLogger("im2txt_trainer.train")
# A collective failed: a worker died or cannot be reached.
LOST_WORKER = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
               tf.errors.DeadlineExceededError)


class Stop:
    """The signal handler: records the signal; the loop ends after the step in flight."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal = signum


@dataclasses.dataclass
class Built:
    """What build() made: the model under the strategy and what the loop needs besides."""

    model: ShowAndTell
    variables: dict[str, tf.Variable]
    files: list[str]
    jit: bool
    mixed: bool
    # A setup error, held until every worker has said whether its setup worked (the others would otherwise wait
    # for this one in their next collective).
    problem: TrainError | None


def train(a: argparse.Namespace, stop: Stop) -> int:
    """Place, build, restore, loop; the exit status (0: target reached, 128 + signal: stopped)."""
    placement = place(a)
    chief = placement.is_chief
    write_dir = a.train_dir if chief else tempfile.mkdtemp(prefix=f"im2txt-worker{placement.worker_index}-")
    try:
        built = build(a, placement)
        step, restored = restore(a, placement, built)
        if step >= a.number_of_steps:
            log.info("global step %d already reached --number_of_steps=%d; nothing to do", step, a.number_of_steps)
            return 0
        return loop(a, stop, placement, built, write_dir, step, restored)
    except LOST_WORKER as e:
        if not placement.multi_worker:
            raise
        # The step in flight may have half-updated the batch-norm statistics, so nothing is saved; the stage
        # restarts as a whole from the last checkpoint.
        log.warning("collective failure: %s", getattr(e, "message", e))
        raise TrainError(f"lost another worker ({type(e).__name__}); no checkpoint of the step in flight, the "
                         "stage resumes from the last one") from e
    finally:
        if not chief:  # the standard pattern: only the chief's checkpoints and summaries are kept
            shutil.rmtree(write_dir, ignore_errors=True)


def place(a: argparse.Namespace) -> Placement:
    """TF_CONFIG (or the Indexed Job's variables) -> the strategy; first, before TensorFlow sets up devices."""
    try:
        placement = distribute.place(a.distribution, a.cpu_devices, cluster.ensure_tf_config(os.environ))
    except (cluster.ClusterError, ValueError) as e:
        raise TrainError(str(e)) from e
    if a.batch_size % placement.replicas:
        raise TrainError(f"--batch_size={a.batch_size} is the global batch and must divide evenly over "
                         f"{placement.replicas} replicas")
    return placement


# -- build ----------------------------------------------------------------------------------------------------
def build(a: argparse.Namespace, placement: Placement) -> Built:
    """The input files, the train_dir check (chief), the precision settings and the model under the strategy."""
    problem: TrainError | None = None
    files: list[str] = []
    try:
        files = data.match_files(a.input_file_pattern)
        if placement.is_chief:
            check_train_dir(a.train_dir)
    except data.InputError as e:
        problem = TrainError(str(e))
    except TrainError as e:
        problem = e
    if problem and not placement.multi_worker:
        raise problem
    if files:
        log.info("training on %d input files matching %s", len(files), a.input_file_pattern)

    gpus = tf.config.list_physical_devices("GPU")
    # bfloat16 needs no loss scaling; only Ampere (compute capability 8.0) and later run it fast.
    bf16_gpu = bool(gpus) and all(
        tuple(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))) >= (8, 0)
        for g in gpus)
    mixed = a.mixed_precision == "true" or (a.mixed_precision == "auto" and bf16_gpu)
    jit = a.jit_compile == "true" or (a.jit_compile == "auto" and bool(gpus))
    cfg = ModelConfig.for_image_size(a.image_size, vocab_size=a.vocab_size, embedding_size=a.embedding_size,
                                     num_lstm_units=a.num_lstm_units, batch_size=a.batch_size)
    tcfg = dataclasses.replace(TrainingConfig(), initial_learning_rate=a.initial_learning_rate,
                               train_inception_learning_rate=a.train_inception_learning_rate,
                               num_examples_per_epoch=a.num_examples_per_epoch,
                               max_checkpoints_to_keep=a.max_checkpoints)
    with placement.strategy.scope():
        model = ShowAndTell(cfg, tcfg, seed=a.seed, encoder_dtype="mixed_bfloat16" if mixed else None)
    return Built(model, model.named_variables(), files, jit, mixed, problem)


# -- restore --------------------------------------------------------------------------------------------------
def restore(a: argparse.Namespace, placement: Placement, built: Built) -> tuple[int, str | None]:
    """(global step, the checkpoint resumed from or None): the chief restores or initialises, every worker agrees
    that setup worked, then takes the chief's values."""
    chief, problem, restored = placement.is_chief, built.problem, None
    if chief and problem is None:  # only the chief reads train_dir; the others get its values below
        try:
            restored = restore_or_initialise(a, built.model, built.variables)
        except TrainError as e:
            problem = e
    if placement.any_worker(problem is not None):
        raise problem or TrainError("another worker failed to start (see the log of worker 0 and the others)")
    distribute.broadcast_from_chief(placement, list(built.variables.values()))
    step = int(built.model.global_step.numpy())
    if placement.multi_worker and not chief:
        log.info("worker %d of %d: took the chief's values at global step %d", placement.worker_index,
                 placement.num_workers, step)
    return step, restored


def restore_or_initialise(a: argparse.Namespace, model: ShowAndTell, variables: dict) -> str | None:
    """The newest checkpoint in train_dir, else (global step 0) InceptionV3 from the slim file."""
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


# -- loop -----------------------------------------------------------------------------------------------------
def loop(a: argparse.Namespace, stop: Stop, placement: Placement, built: Built, write_dir: str, step: int,
         restored: str | None) -> int:
    """Train from `step` to --number_of_steps, saving and summarising on their intervals and at the end."""
    strategy, model = placement.strategy, built.model
    ds, precomputed = _dataset(a, strategy, built)
    train_step = make_train_step(model, a.train_inception, precomputed=precomputed, jit=built.jit,
                                 strategy=strategy, element_spec=ds.element_spec)
    saver = checkpoints.Saver(write_dir, built.variables, a.save_interval_secs, a.max_checkpoints)
    saver.last_step = step if restored or not placement.is_chief else None  # that checkpoint exists already
    writer = tf.summary.create_file_writer(write_dir)
    iterator = iter(ds)
    last_summary = time.monotonic()
    _log_start(a, placement, built, step)

    stopped = False
    last: tuple[Any, float] | None = None  # the last step's total loss (a tensor: read once, at the end) and time
    while step < a.number_of_steps:
        if placement.any_worker(stop.signal is not None):  # every worker stops at the same step
            stopped = True
            break
        t0 = time.monotonic()
        batch = _next_batch(a, iterator, saver, step)
        try:
            batch_loss, total_loss, lr = train_step(batch)
        except tf.errors.InvalidArgumentError as e:
            msg = getattr(e, "message", str(e)).splitlines()[0]
            raise TrainError(f"bad input batch (are all caption ids < --vocab_size={a.vocab_size}?): {msg}") from e
        step = int(model.global_step.numpy())
        dt = time.monotonic() - t0
        last = (total_loss, dt)
        if placement.is_chief and step % a.log_every_n_steps == 0:  # the operator reads progress from these lines
            log.info("global step %d: loss = %.4f (%.3f sec/step)", step, float(total_loss), dt)
        if time.monotonic() - last_summary >= a.save_summaries_secs or step >= a.number_of_steps:
            _summarise(writer, step, a.batch_size, dt, batch_loss, total_loss, lr)
            last_summary = time.monotonic()
        if saver.due():
            saver.save(step)

    saver.save(step)
    writer.close()
    if stopped:
        signum = stop.signal or signal.SIGTERM
        log.info("stopped by signal %d%s at global step %d; checkpoint saved", signum,
                 "" if stop.signal else " to another worker", step)
        termination.write(f"stopped by signal {signum} at global step {step} before --number_of_steps="
                          f"{a.number_of_steps}; checkpoint saved")
        return 128 + signum
    log.info("reached global step %d", step)
    # The operator reads how the stage ended from the pod's status (one pod list), not from this log.
    termination.write(termination.reached(step, *((float(last[0]), last[1]) if last else ())))
    return 0


def _dataset(a: argparse.Namespace, strategy: tf.distribute.Strategy, built: Built,
             ) -> tuple[tf.distribute.DistributedDataset, bool]:
    """The distributed input and whether it holds precomputed image features instead of images."""
    model, cfg = built.model, built.model.cfg
    precomputed = a.precompute_embeddings and not a.train_inception
    cache = (embeddings.precompute(model, built.files, cfg, embeddings.cache_dir_or_default(a.embeddings_cache_dir),
                                   jit=built.jit) if precomputed else "")

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # One input pipeline per worker, batched per replica; each reads its own shard in its own order.
        rcfg = dataclasses.replace(cfg, batch_size=ctx.get_per_replica_batch_size(a.batch_size))
        shard = (ctx.num_input_pipelines, ctx.input_pipeline_id)
        seed = None if a.seed is None else a.seed + ctx.input_pipeline_id
        if precomputed:
            return embeddings.cached_dataset(cache, int(model.image_embedding.shape[0]), rcfg, seed=seed,
                                             shuffle_buffer=a.shuffle_buffer or None, shard=shard)
        return data.caption_dataset(built.files, rcfg, is_training=True, seed=seed,
                                    shuffle_buffer=a.shuffle_buffer or None, shard=shard)

    return strategy.distribute_datasets_from_function(dataset_fn), precomputed


def _log_start(a: argparse.Namespace, placement: Placement, built: Built, step: int) -> None:
    log.info("training %s from global step %d to %d (global batch %d on %d replica(s), %s; image %d, jit=%s, "
             "mixed_precision=%s)", "stage 2 (InceptionV3 trains)" if a.train_inception else "stage 1", step,
             a.number_of_steps, a.batch_size, placement.replicas, placement.kind, a.image_size, built.jit,
             built.mixed)
    if a.batch_size != 32:
        log.info("learning rate %g (stage 1) / %g (stage 2) for a global batch of %d: the reference tuned its "
                 "rates for 32; scale them yourself with --initial_learning_rate/--train_inception_learning_rate",
                 a.initial_learning_rate, a.train_inception_learning_rate, a.batch_size)


def _next_batch(a: argparse.Namespace, iterator, saver: checkpoints.Saver, step: int) -> tuple:
    """The next global batch; a corrupt record ends the run in one line (after a save, if training had begun)."""
    try:
        return next(iterator)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        if step > 0:
            saver.save(step)
        msg = getattr(e, "message", str(e)).splitlines()[0]
        raise TrainError(f"corrupt input record in --input_file_pattern {a.input_file_pattern!r}: {msg}") from e


def _summarise(writer: tf.summary.SummaryWriter, step: int, batch_size: int, dt: float, batch_loss: tf.Tensor,
               total_loss: tf.Tensor, lr: tf.Tensor) -> None:
    with writer.as_default(step=step):
        tf.summary.scalar("losses/batch_loss", batch_loss)
        tf.summary.scalar("losses/total_loss", total_loss)
        tf.summary.scalar("learning_rate", lr)
        tf.summary.scalar("global_step/sec", 1.0 / max(dt, 1e-9))
        tf.summary.scalar("examples/sec", batch_size / max(dt, 1e-9))
    writer.flush()
