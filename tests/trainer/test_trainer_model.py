"""The Show and Tell LSTM has BasicLSTMCell semantics; the loss and schedule are the reference's."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer.config import ModelConfig, learning_rate
from im2txt_trainer.model import ShowAndTell
from im2txt_trainer.steps import lr_tensor


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


def test_learning_rate_schedule(model):
    # decay every int(586363 / 32 * 8) = 146590 steps, x0.5, staircase; stage 2 constant 0.0005
    assert learning_rate(0, 32, False) == 2.0
    assert learning_rate(146589, 32, False) == 2.0
    assert learning_rate(146590, 32, False) == 1.0
    assert learning_rate(3 * 146590, 32, False) == 0.25
    assert learning_rate(5, 32, True) == 0.0005
    m = ShowAndTell(ModelConfig.for_image_size(75, vocab_size=4, embedding_size=2, num_lstm_units=2))
    m.global_step.assign(146590)
    assert float(lr_tensor(m, False)) == pytest.approx(1.0)
    assert float(lr_tensor(m, True)) == pytest.approx(0.0005)
