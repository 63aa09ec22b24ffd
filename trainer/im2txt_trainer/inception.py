"""InceptionV3 base (Keras InceptionV3 without top) with an exact map to the TF-slim variable names.

The network is built layer by layer in the same order as keras.applications.InceptionV3 and slim's
inception_v3_base, so each Conv2D + batch norm (slim's: no gamma, batch_norm.py) pair carries its slim scope
(e.g. `InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5`, slim's own spelling). 94 pairs, 376 variables.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from .batch_norm import SlimBatchNorm

SCOPE = "InceptionV3"


@dataclasses.dataclass
class ConvBN:
    scope: str
    conv: keras.layers.Conv2D
    bn: SlimBatchNorm

    def variables(self) -> dict[str, tf.Variable]:
        """slim name -> variable."""
        return {
            f"{self.scope}/weights": self.conv.kernel,
            f"{self.scope}/BatchNorm/beta": self.bn.beta,
            f"{self.scope}/BatchNorm/moving_mean": self.bn.moving_mean,
            f"{self.scope}/BatchNorm/moving_variance": self.bn.moving_variance,
        }


class _Builder:
    def __init__(self, bn_decay: float, bn_epsilon: float, stddev: float, dtype: object | None) -> None:
        self.layers: list[ConvBN] = []
        self.bn_decay, self.bn_epsilon, self.stddev, self.dtype = bn_decay, bn_epsilon, stddev, dtype

    def conv(self, x, scope: str, filters: int, kh: int, kw: int, strides: int = 1, padding: str = "same"):
        name = f"{SCOPE}/{scope}"
        safe = name.replace("/", "__")
        conv = keras.layers.Conv2D(filters, (kh, kw), strides=strides, padding=padding, use_bias=False,
                                   kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.stddev),
                                   name=f"{safe}__conv", dtype=self.dtype)
        bn = SlimBatchNorm(self.bn_decay, self.bn_epsilon, name=f"{safe}__bn", dtype=self.dtype)
        self.layers.append(ConvBN(name, conv, bn))
        return keras.layers.Activation("relu", name=f"{safe}__relu", dtype=self.dtype)(bn(conv(x)))

    def avg(self, x):
        return keras.layers.AveragePooling2D(3, strides=1, padding="same", dtype=self.dtype)(x)

    def max(self, x, strides: int = 2):
        return keras.layers.MaxPooling2D(3, strides=strides, padding="valid", dtype=self.dtype)(x)

    def cat(self, xs):
        return keras.layers.Concatenate(axis=3, dtype=self.dtype)(xs)


def _mixed_5(b: _Builder, x, name: str, pool_filters: int, second: bool):
    b0 = b.conv(x, f"{name}/Branch_0/Conv2d_0a_1x1", 64, 1, 1)
    if second:  # slim names Mixed_5c's 5x5 branch oddly
        b1 = b.conv(x, f"{name}/Branch_1/Conv2d_0b_1x1", 48, 1, 1)
        b1 = b.conv(b1, f"{name}/Branch_1/Conv_1_0c_5x5", 64, 5, 5)
    else:
        b1 = b.conv(x, f"{name}/Branch_1/Conv2d_0a_1x1", 48, 1, 1)
        b1 = b.conv(b1, f"{name}/Branch_1/Conv2d_0b_5x5", 64, 5, 5)
    b2 = b.conv(x, f"{name}/Branch_2/Conv2d_0a_1x1", 64, 1, 1)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0b_3x3", 96, 3, 3)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0c_3x3", 96, 3, 3)
    b3 = b.conv(b.avg(x), f"{name}/Branch_3/Conv2d_0b_1x1", pool_filters, 1, 1)
    return b.cat([b0, b1, b2, b3])


def _mixed_6(b: _Builder, x, name: str, c: int):
    b0 = b.conv(x, f"{name}/Branch_0/Conv2d_0a_1x1", 192, 1, 1)
    b1 = b.conv(x, f"{name}/Branch_1/Conv2d_0a_1x1", c, 1, 1)
    b1 = b.conv(b1, f"{name}/Branch_1/Conv2d_0b_1x7", c, 1, 7)
    b1 = b.conv(b1, f"{name}/Branch_1/Conv2d_0c_7x1", 192, 7, 1)
    b2 = b.conv(x, f"{name}/Branch_2/Conv2d_0a_1x1", c, 1, 1)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0b_7x1", c, 7, 1)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0c_1x7", c, 1, 7)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0d_7x1", c, 7, 1)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0e_1x7", 192, 1, 7)
    b3 = b.conv(b.avg(x), f"{name}/Branch_3/Conv2d_0b_1x1", 192, 1, 1)
    return b.cat([b0, b1, b2, b3])


def _mixed_7(b: _Builder, x, name: str, last: bool):
    b0 = b.conv(x, f"{name}/Branch_0/Conv2d_0a_1x1", 320, 1, 1)
    b1 = b.conv(x, f"{name}/Branch_1/Conv2d_0a_1x1", 384, 1, 1)
    b1 = b.cat([b.conv(b1, f"{name}/Branch_1/Conv2d_0b_1x3", 384, 1, 3),
                b.conv(b1, f"{name}/Branch_1/Conv2d_0{'c' if last else 'b'}_3x1", 384, 3, 1)])
    b2 = b.conv(x, f"{name}/Branch_2/Conv2d_0a_1x1", 448, 1, 1)
    b2 = b.conv(b2, f"{name}/Branch_2/Conv2d_0b_3x3", 384, 3, 3)
    b2 = b.cat([b.conv(b2, f"{name}/Branch_2/Conv2d_0c_1x3", 384, 1, 3),
                b.conv(b2, f"{name}/Branch_2/Conv2d_0d_3x1", 384, 3, 1)])
    b3 = b.conv(b.avg(x), f"{name}/Branch_3/Conv2d_0b_1x1", 192, 1, 1)
    return b.cat([b0, b1, b2, b3])


class InceptionV3Base:
    """Functional Keras model image [B,H,W,3] in [-1,1] -> Mixed_7c features, plus the slim name map."""

    def __init__(self, height: int = 299, width: int = 299, bn_decay: float = 0.9997, bn_epsilon: float = 0.001,
                 stddev: float = 0.1, dtype: object | None = None) -> None:
        b = _Builder(bn_decay, bn_epsilon, stddev, dtype)
        inputs = keras.Input((height, width, 3))
        x = b.conv(inputs, "Conv2d_1a_3x3", 32, 3, 3, strides=2, padding="valid")
        x = b.conv(x, "Conv2d_2a_3x3", 32, 3, 3, padding="valid")
        x = b.conv(x, "Conv2d_2b_3x3", 64, 3, 3)
        x = b.max(x)
        x = b.conv(x, "Conv2d_3b_1x1", 80, 1, 1, padding="valid")
        x = b.conv(x, "Conv2d_4a_3x3", 192, 3, 3, padding="valid")
        x = b.max(x)
        x = _mixed_5(b, x, "Mixed_5b", 32, second=False)
        x = _mixed_5(b, x, "Mixed_5c", 64, second=True)
        x = _mixed_5(b, x, "Mixed_5d", 64, second=False)
        b0 = b.conv(x, "Mixed_6a/Branch_0/Conv2d_1a_1x1", 384, 3, 3, strides=2, padding="valid")
        b1 = b.conv(x, "Mixed_6a/Branch_1/Conv2d_0a_1x1", 64, 1, 1)
        b1 = b.conv(b1, "Mixed_6a/Branch_1/Conv2d_0b_3x3", 96, 3, 3)
        b1 = b.conv(b1, "Mixed_6a/Branch_1/Conv2d_1a_1x1", 96, 3, 3, strides=2, padding="valid")
        x = b.cat([b0, b1, b.max(x)])
        x = _mixed_6(b, x, "Mixed_6b", 128)
        x = _mixed_6(b, x, "Mixed_6c", 160)
        x = _mixed_6(b, x, "Mixed_6d", 160)
        x = _mixed_6(b, x, "Mixed_6e", 192)
        b0 = b.conv(x, "Mixed_7a/Branch_0/Conv2d_0a_1x1", 192, 1, 1)
        b0 = b.conv(b0, "Mixed_7a/Branch_0/Conv2d_1a_3x3", 320, 3, 3, strides=2, padding="valid")
        b1 = b.conv(x, "Mixed_7a/Branch_1/Conv2d_0a_1x1", 192, 1, 1)
        b1 = b.conv(b1, "Mixed_7a/Branch_1/Conv2d_0b_1x7", 192, 1, 7)
        b1 = b.conv(b1, "Mixed_7a/Branch_1/Conv2d_0c_7x1", 192, 7, 1)
        b1 = b.conv(b1, "Mixed_7a/Branch_1/Conv2d_1a_3x3", 192, 3, 3, strides=2, padding="valid")
        x = b.cat([b0, b1, b.max(x)])
        x = _mixed_7(b, x, "Mixed_7b", last=False)
        x = _mixed_7(b, x, "Mixed_7c", last=True)
        self.model = keras.Model(inputs, x, name="InceptionV3")
        self.layers = b.layers

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.model(images, training=training)

    def variables(self) -> dict[str, tf.Variable]:
        """All 376 slim-named variables."""
        out: dict[str, tf.Variable] = {}
        for layer in self.layers:
            out.update(layer.variables())
        return out

    def trainable_variables(self) -> list[tf.Variable]:
        """What slim trains in stage 2: conv weights and BN beta (no gamma; moving stats are not trained)."""
        return [v for layer in self.layers for v in (layer.conv.kernel, layer.bn.beta)]

    def conv_kernels(self) -> list[tf.Variable]:
        return [layer.conv.kernel for layer in self.layers]


class CheckpointImportError(ValueError):
    pass


def load_slim_checkpoint(encoder: InceptionV3Base, path: str) -> int:
    """Assign every InceptionV3 variable from a slim checkpoint (V1 or V2); Logits/AuxLogits are ignored."""
    try:
        reader = tf.train.load_checkpoint(path)
    except Exception as e:  # NotFoundError, DataLossError, ... all mean the same to the user
        raise CheckpointImportError(f"--inception_checkpoint_file: cannot read checkpoint {path!r}: {e}") from e
    shapes = reader.get_variable_to_shape_map()
    missing = [n for n in encoder.variables() if n not in shapes]
    if missing:
        raise CheckpointImportError(
            f"--inception_checkpoint_file: {path!r} lacks {len(missing)} InceptionV3 variables, e.g. {missing[0]!r}")
    for name, var in encoder.variables().items():
        value = reader.get_tensor(name)
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointImportError(f"--inception_checkpoint_file: {name} has shape {value.shape}, "
                                        f"expected {tuple(var.shape)}")
        var.assign(np.asarray(value, dtype=tf.as_dtype(var.dtype).as_numpy_dtype))
    return len(encoder.variables())
