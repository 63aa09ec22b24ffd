"""The Show and Tell LSTM has BasicLSTMCell semantics; the loss and schedule are the reference's."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer.config import ModelConfig, TrainingConfig
from im2txt_trainer.model import ShowAndTell
from im2txt_trainer.schedule import learning_rate
from im2txt_trainer.steps import make_train_step


@pytest.fixture(scope="module")
def model():
    m = ShowAndTell(ModelConfig.for_image_size(75, vocab_size=30, embedding_size=6, num_lstm_units=5), seed=4)
    m.lstm_bias.assign(tf.random.stateless_uniform([20], seed=[3, 4], minval=-0.5, maxval=0.5))
    return m


def _reorder(w: np.ndarray) -> np.ndarray:
    """BasicLSTMCell column blocks i, j, f, o -> Keras LSTM's i, f, c(=j), o."""
    i, j, f, o = np.split(w, 4, axis=-1)
    return np.concatenate([i, f, j, o], axis=-1)


def test_lstm_matches_keras_lstm_with_converted_weights(model):
    """An independent LSTM (Keras) given the kernel split at row E, reordered, forget bias +1 folded in."""
    e, u = 6, 5
    image_emb = tf.random.stateless_normal([3, e], seed=[1, 1])
    ids = tf.constant([[0, 4, 7, 9], [0, 2, 2, 3], [0, 11, 1, 29]], tf.int64)
    ours = model.logits(image_emb, ids, training=False).numpy()

    kernel, bias = model.lstm_kernel.numpy(), model.lstm_bias.numpy()
    i, j, f, o = np.split(bias, 4)
    lstm = keras.layers.LSTM(u, return_sequences=True, unit_forget_bias=False)
    lstm.build((None, None, e))
    lstm.set_weights([_reorder(kernel[:e]), _reorder(kernel[e:]), np.concatenate([i, f + 1.0, j, o])])
    zeros = tf.zeros([3, u])
    # The image is the first input; its output is dropped and its state starts the caption.
    _, h0, c0 = keras.layers.RNN(lstm.cell, return_state=True)(image_emb[:, None], initial_state=[zeros, zeros])
    words = tf.nn.embedding_lookup(model.seq_embedding, ids)
    hs = lstm(words, initial_state=[h0, c0])
    expected = (tf.einsum("btu,uv->btv", hs, model.logits_weights) + model.logits_biases).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_inference_step_equals_training_unroll(model):
    """Beam search's one-step function and the training unroll agree (no dropout)."""
    image_emb = tf.random.stateless_normal([2, 6], seed=[2, 2])
    ids = tf.constant([[0, 5, 6], [0, 8, 1]], tf.int64)
    logits = model.logits(image_emb, ids, training=False)
    c, h = model.initial_state(image_emb, training=False)
    state = tf.concat([c, h], 1)
    for t in range(3):
        probs, state = model.inference_step(ids[:, t], state)
        np.testing.assert_allclose(probs.numpy(), tf.nn.softmax(logits[:, t]).numpy(), rtol=1e-5, atol=1e-6)


def test_masked_loss_and_weight_decay(model):
    logits = tf.random.stateless_normal([2, 3, 30], seed=[5, 5])
    targets = tf.constant([[1, 2, 3], [4, 0, 0]], tf.int64)
    mask = tf.constant([[1, 1, 1], [1, 0, 0]], tf.int32)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits).numpy()
    expected = (xent[0].sum() + xent[1, 0]) / 4
    assert model.batch_loss(logits, targets, mask).numpy() == pytest.approx(expected, rel=1e-6)
    l2 = sum(float(np.sum(np.square(k.numpy()))) / 2 for k in model.encoder.conv_kernels())
    assert model.regularization_loss().numpy() == pytest.approx(4e-5 * l2, rel=1e-4)


def test_learning_rate_schedule():
    # decay every int(586363 / 32 * 8) = 146590 steps, x0.5, staircase; stage 2 constant 0.0005
    def lr(step: int, train_inception: bool = False, batch: int = 32, **cfg: float) -> float:
        return float(learning_rate(step, batch, train_inception, TrainingConfig(**cfg)))

    assert lr(0) == 2.0
    assert lr(146589) == 2.0
    assert lr(146590) == 1.0
    assert lr(3 * 146590) == 0.25
    assert lr(5, True) == np.float32(0.0005)
    # The global batch sets the epoch: int(586363 / 64 * 8) = 73295 steps per decay at 64.
    assert (lr(73294, batch=64), lr(73295, batch=64), lr(146590, batch=64)) == (2.0, 1.0, 0.5)
    assert lr(146590, learning_rate_decay_factor=0.0) == 2.0  # no decay
    # A tf.Variable step (the training step's global_step) reads the same.
    assert float(learning_rate(tf.Variable(146590, dtype=tf.int64), 32, False)) == 1.0


def test_the_training_step_uses_the_schedule(model):
    """The step applies (and returns) the schedule's rate at global_step before its += 1: 2.0 at the last step
    before the first decay, 1.0 at that step."""
    cfg = model.cfg
    step = make_train_step(model, False, precomputed=True)
    feats = tf.random.stateless_normal([cfg.batch_size, 2048], seed=[1, 2])
    ids = tf.random.stateless_uniform([cfg.batch_size, 5], seed=[3, 4], maxval=cfg.vocab_size, dtype=tf.int64)
    batch = (feats, ids, tf.roll(ids, -1, 1), tf.ones([cfg.batch_size, 5], tf.int32))
    saved = [v.numpy() for v in model.caption_variables()]
    try:
        rates = []
        for at in (146589, 146590):
            model.global_step.assign(at)
            rates.append(float(step(batch)[2]))
            assert int(model.global_step.numpy()) == at + 1
        assert rates == [float(learning_rate(146589, cfg.batch_size, False)),
                         float(learning_rate(146590, cfg.batch_size, False))] == [2.0, 1.0]
    finally:
        model.global_step.assign(0)
        for v, value in zip(model.caption_variables(), saved, strict=True):
            v.assign(value)
