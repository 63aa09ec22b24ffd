"""The compiled training step: loss, reference L2, global-norm clipping, plain SGD, global_step += 1."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from .model import ShowAndTell


def lr_tensor(model: ShowAndTell, train_inception: bool) -> tf.Tensor:
    cfg = model.train_cfg
    if train_inception:
        return tf.constant(cfg.train_inception_learning_rate, tf.float32)
    if cfg.learning_rate_decay_factor <= 0:
        return tf.constant(cfg.initial_learning_rate, tf.float32)
    decay_steps = int(cfg.num_examples_per_epoch / model.cfg.batch_size * cfg.num_epochs_per_decay)
    exponent = tf.cast(model.global_step // decay_steps, tf.float32)
    return cfg.initial_learning_rate * tf.pow(cfg.learning_rate_decay_factor, exponent)


def make_train_step(model: ShowAndTell, train_inception: bool, precomputed: bool = False,
                    jit: bool = False) -> Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    variables = model.trainable(train_inception)
    clip = model.train_cfg.clip_gradients

    def features(images: tf.Tensor) -> tf.Tensor:
        return model.image_features(images, training=True, train_inception=train_inception)

    # XLA pays off for the fixed-shape encoder; the LSTM's length changes per batch (dynamic padding).
    encode = tf.function(features, jit_compile=True) if jit and not train_inception else features
    b = model.cfg.batch_size
    first = (tf.TensorSpec([b, 2048], tf.float32) if precomputed else
             tf.TensorSpec([b, model.cfg.image_height, model.cfg.image_width, 3], tf.float32))

    @tf.function(input_signature=[first, tf.TensorSpec([b, None], tf.int64), tf.TensorSpec([b, None], tf.int64),
                                  tf.TensorSpec([b, None], tf.int32)])
    def step(images, input_seqs, target_seqs, mask):
        lr = lr_tensor(model, train_inception)
        # Stage 1: the frozen encoder runs outside the tape (nothing to record; measurably faster).
        feats = images if precomputed or train_inception else tf.stop_gradient(encode(images))
        with tf.GradientTape() as tape:
            if train_inception:
                feats = encode(images)
            logits = model.logits(model.embed_image(feats), input_seqs, training=True)
            batch_loss = model.batch_loss(logits, target_seqs, mask)
            total_loss = batch_loss + model.regularization_loss() if train_inception else batch_loss
        grads = tape.gradient(total_loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        for g, v in zip(grads, variables, strict=True):
            if isinstance(g, tf.IndexedSlices):
                v.scatter_sub(tf.IndexedSlices(lr * g.values, g.indices, g.dense_shape))
            else:
                v.assign_sub(lr * g)
        model.global_step.assign_add(1)
        return batch_loss, total_loss, lr

    return step
