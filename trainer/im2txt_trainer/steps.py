"""The compiled training step: loss, reference L2, global-norm clipping, plain SGD, global_step += 1.

One step is one SGD update on one global batch, on one device or on N replicas (tf.distribute). Each replica
divides its summed masked cross-entropy by the GLOBAL batch's sum(mask), and adds 1/N of the L2 term, so the
replicas' losses and gradients sum to exactly the single-device ones; gradients are summed across replicas
before clipping (the global norm is the whole batch's), and every replica applies the same update.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from .distribute import tf_variable
from .model import ShowAndTell
from .schedule import learning_rate

SUM = tf.distribute.ReduceOp.SUM


def batch_spec(model: ShowAndTell, precomputed: bool) -> tuple[tf.TensorSpec, ...]:
    """One global batch on one device: (images or features, input_seqs, target_seqs, mask)."""
    b = model.cfg.batch_size
    first = (tf.TensorSpec([b, 2048], tf.float32) if precomputed else
             tf.TensorSpec([b, model.cfg.image_height, model.cfg.image_width, 3], tf.float32))
    return first, tf.TensorSpec([b, None], tf.int64), tf.TensorSpec([b, None], tf.int64), tf.TensorSpec(
        [b, None], tf.int32)


def _sgd(var: tf.Variable, grad: tf.Tensor | tf.IndexedSlices, lr: tf.Tensor) -> tf.Operation:
    if isinstance(grad, tf.IndexedSlices):  # the word embedding: only the rows in the batch
        return var.scatter_sub(tf.IndexedSlices(lr * grad.values, grad.indices, grad.dense_shape))
    return var.assign_sub(tf.cast(lr * grad, var.dtype))


def make_train_step(model: ShowAndTell, train_inception: bool, precomputed: bool = False, jit: bool = False,
                    strategy: tf.distribute.Strategy | None = None, element_spec: object | None = None,
                    ) -> Callable[[tuple], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """step(batch) -> (batch_loss, total_loss, learning_rate) of the global batch.

    `batch` is one batch tuple, or, under a strategy, one element of its distributed dataset (`element_spec`).
    """
    strategy = strategy or tf.distribute.get_strategy()
    variables = [tf_variable(v) for v in model.trainable(train_inception)]
    clip = model.train_cfg.clip_gradients

    def features(images: tf.Tensor) -> tf.Tensor:
        return model.image_features(images, training=True, train_inception=train_inception)

    # XLA pays off for the fixed-shape encoder; the LSTM's length changes per batch (dynamic padding).
    encode = tf.function(features, jit_compile=True) if jit and not train_inception else features

    def replica_step(images, input_seqs, target_seqs, mask, lr):
        ctx = tf.distribute.get_replica_context()
        weight = ctx.all_reduce(SUM, tf.reduce_sum(tf.cast(mask, tf.float32)))
        # Stage 1: the frozen encoder runs outside the tape (nothing to record; measurably faster).
        feats = images if precomputed or train_inception else tf.stop_gradient(encode(images))
        with tf.GradientTape() as tape:
            if train_inception:
                feats = encode(images)
            logits = model.logits(model.embed_image(feats), input_seqs, training=True)
            batch_loss = model.batch_loss(logits, target_seqs, mask, total_weight=weight)
            total_loss = batch_loss
            if train_inception:
                total_loss += model.regularization_loss() / ctx.num_replicas_in_sync
        # float32 gradients whatever the encoder computes in (a float64 encoder, as one test uses, too).
        grads = [g if isinstance(g, tf.IndexedSlices) else tf.cast(g, tf.float32)
                 for g in tape.gradient(total_loss, variables)]
        grads = ctx.all_reduce(SUM, grads)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        ctx.merge_call(apply, args=(grads, lr))
        return batch_loss, total_loss

    def apply(strat: tf.distribute.Strategy, grads: list, lr: tf.Tensor) -> None:
        for g, v in zip(grads, variables, strict=True):
            strat.extended.update(v, _sgd, args=(g, lr))
        model.global_step.assign_add(1)

    @tf.function(input_signature=[element_spec or batch_spec(model, precomputed)])
    def step(batch):
        lr = learning_rate(model.global_step, model.cfg.batch_size, train_inception, model.train_cfg)
        batch_loss, total_loss = strategy.run(replica_step, args=(*batch, lr))
        return strategy.reduce(SUM, batch_loss, axis=None), strategy.reduce(SUM, total_loss, axis=None), lr

    return step
