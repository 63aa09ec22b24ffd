"""slim.batch_norm(scale=False) as the reference trains InceptionV3 in stage 2.

Differences from keras.layers.BatchNormalization, each on purpose:
- The moving variance is updated with the unbiased batch variance (n/(n-1)), as TF1's fused batch norm, which
  slim uses, does; the batch itself is normalised with the biased one.
- Under a tf.distribute strategy the batch statistics are those of the global batch (one all-reduce per layer),
  so N replicas normalise exactly as one device would on the whole batch. One replica uses TF's fused kernel.
- The moving statistics take the first replica's update (they are identical on every replica).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def batch_moments(x: tf.Tensor, shift: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mean, biased variance and element count per channel of NHWC `x`, over every replica's batch.

    One pass of shifted sums (the shift, e.g. the moving mean, keeps E[x^2]-E[x]^2 well conditioned), so the
    replicas need one all-reduce of [sum, sum of squares, count].
    """
    d = x - tf.stop_gradient(shift)
    stats = tf.concat([tf.reduce_sum(d, [0, 1, 2]), tf.reduce_sum(tf.square(d), [0, 1, 2]),
                       tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)[None]], 0)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats)
    c = int(x.shape[-1])
    count = stats[2 * c]
    mean_d = stats[:c] / count
    variance = tf.maximum(stats[c:2 * c] / count - tf.square(mean_d), 0.0)
    return mean_d + tf.stop_gradient(shift), variance, count


class SlimBatchNorm(keras.layers.Layer):
    """Batch norm without gamma over the last axis: beta trains, moving mean/variance are updated in training."""

    def __init__(self, decay: float = 0.9997, epsilon: float = 0.001, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decay, self.epsilon = float(decay), float(epsilon)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        shape = (int(input_shape[-1]),)
        self.beta = self.add_weight(shape=shape, name="beta", initializer="zeros", autocast=False)
        # Every replica computes the same global statistics, so the first replica's update stands for all.
        self.moving_mean = self.add_weight(shape=shape, name="moving_mean", initializer="zeros", trainable=False,
                                           autocast=False, aggregation="only_first_replica")
        self.moving_variance = self.add_weight(shape=shape, name="moving_variance", initializer="ones",
                                               trainable=False, autocast=False, aggregation="only_first_replica")

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        # Statistics in float32 also under bfloat16 compute (float64 stays float64).
        x = tf.cast(inputs, tf.float64 if inputs.dtype == tf.float64 else tf.float32)
        moving_mean = tf.cast(self.moving_mean, x.dtype)
        moving_variance = tf.cast(self.moving_variance, x.dtype)
        beta = tf.cast(self.beta, x.dtype)
        if not training:
            y = tf.nn.batch_normalization(x, moving_mean, moving_variance, offset=beta, scale=None,
                                          variance_epsilon=self.epsilon)
            return tf.cast(y, self.compute_dtype)
        ctx = tf.distribute.get_replica_context()
        if (ctx is None or ctx.num_replicas_in_sync == 1) and x.dtype == tf.float32:
            # One replica: TF's fused kernel, as slim ran it (its batch variance output is already unbiased),
            # faster and lighter on memory than the ops below.
            y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(x, tf.ones_like(beta), beta, epsilon=self.epsilon,
                                                                 is_training=True)
        else:
            mean, variance, count = batch_moments(x, moving_mean)
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
            y = tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=None, variance_epsilon=self.epsilon)
        self.moving_mean.assign(moving_mean * self.decay + tf.stop_gradient(mean) * (1.0 - self.decay))
        self.moving_variance.assign(moving_variance * self.decay + tf.stop_gradient(unbiased) * (1.0 - self.decay))
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay": self.decay, "epsilon": self.epsilon}
