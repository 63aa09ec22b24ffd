"""Batch norm as slim trains it: the moving variance takes the unbiased batch variance, n/(n-1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer.batch_norm import SlimBatchNorm
from im2txt_trainer.config import ModelConfig, TrainingConfig
from im2txt_trainer.model import ShowAndTell
from im2txt_trainer.steps import make_train_step


@pytest.mark.parametrize("dtype", ["float32", "float64"])  # TF's fused kernel; the ops replicas synchronise
def test_layer_normalises_with_the_batch_and_updates_with_the_unbiased_variance(dtype):
    x = np.array([[[[1.0, -2.0, 5.0]]], [[[3.0, 0.0, 5.5]]], [[[2.0, 4.0, 4.0]]]], dtype)  # n = 3
    bn = SlimBatchNorm(decay=0.25, epsilon=1e-3, dtype=dtype)
    bn.build(x.shape)
    bn.beta.assign([0.5, 0.0, -1.0])
    bn.moving_mean.assign([1.0, 1.0, 1.0])
    bn.moving_variance.assign([2.0, 2.0, 2.0])
    y = tf.function(lambda t: bn(t, training=True))(tf.constant(x)).numpy()  # compiled, as in the train step
    mean, biased = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(biased + 1e-3) + [0.5, 0.0, -1.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.25 * 1.0 + 0.75 * mean, rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.25 * 2.0 + 0.75 * biased * 3 / 2, rtol=1e-5)
    # Inference uses the moving statistics and changes nothing.
    mm, mv = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    np.testing.assert_allclose(bn(tf.constant(x), training=False).numpy(),
                               (x - mm) / np.sqrt(mv + 1e-3) + [0.5, 0.0, -1.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), mv)


def test_one_stage2_step_updates_the_moving_variance_with_the_unbiased_variance():
    cfg = ModelConfig.for_image_size(75, batch_size=2, vocab_size=12, embedding_size=8, num_lstm_units=8)
    model = ShowAndTell(cfg, dataclasses.replace(TrainingConfig(), batch_norm_decay=0.5), seed=3)
    first = model.encoder.layers[0]  # InceptionV3/Conv2d_1a_3x3: its batch norm sees conv(images) directly
    kernel, mv0 = first.conv.kernel.numpy(), first.bn.moving_variance.numpy()
    images = tf.random.stateless_uniform([2, 75, 75, 3], seed=[5, 6], minval=-1, maxval=1)
    ids = tf.constant([[1, 4, 5, 2], [1, 6, 2, 0]], tf.int64)
    mask = tf.constant([[1, 1, 1, 1], [1, 1, 1, 0]], tf.int32)
    tf.config.run_functions_eagerly(True)  # the same step, without compiling InceptionV3's gradient (~30 s)
    try:
        make_train_step(model, train_inception=True)((images, ids, tf.roll(ids, -1, 1), mask))
    finally:
        tf.config.run_functions_eagerly(False)
    conv = tf.nn.conv2d(images, kernel, strides=2, padding="VALID").numpy().astype(np.float64)
    n = conv.shape[0] * conv.shape[1] * conv.shape[2]
    biased = conv.var(axis=(0, 1, 2))
    got = first.bn.moving_variance.numpy()
    np.testing.assert_allclose(got, 0.5 * mv0 + 0.5 * biased * n / (n - 1), rtol=1e-5)
    with pytest.raises(AssertionError):  # n = 2738: the biased update differs by ~1e-4, beyond the tolerance
        np.testing.assert_allclose(got, 0.5 * mv0 + 0.5 * biased, rtol=1e-5)
