"""The reference learning-rate schedule, as the one float32 tensor the training step, its summaries and tests use."""

from __future__ import annotations

import tensorflow as tf

from .config import TrainingConfig

REFERENCE = TrainingConfig()


def learning_rate(global_step: tf.Tensor | tf.Variable | int, batch_size: int, train_inception: bool,
                  cfg: TrainingConfig = REFERENCE) -> tf.Tensor:
    """Stage 1: initial x decay ** (step // decay_steps) (staircase, decay_steps = examples per epoch / global
    batch x epochs per decay); stage 2: constant. `batch_size` is the global batch of one step."""
    if train_inception:
        return tf.constant(cfg.train_inception_learning_rate, tf.float32)
    if cfg.learning_rate_decay_factor <= 0:
        return tf.constant(cfg.initial_learning_rate, tf.float32)
    decay_steps = int(cfg.num_examples_per_epoch / batch_size * cfg.num_epochs_per_decay)
    exponent = tf.cast(global_step // decay_steps, tf.float32)
    return cfg.initial_learning_rate * tf.pow(cfg.learning_rate_decay_factor, exponent)
