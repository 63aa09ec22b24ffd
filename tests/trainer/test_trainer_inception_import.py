"""The TF-slim inception_v3.ckpt import is exact: names, order, values, and the network they feed."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer import inception, synthetic


def slim_scopes() -> list[str]:
    """slim's inception_v3_base conv scopes in creation order, written out from nets/inception_v3.py."""
    s = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    for m in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        b1 = ["Conv2d_0b_1x1", "Conv_1_0c_5x5"] if m == "Mixed_5c" else ["Conv2d_0a_1x1", "Conv2d_0b_5x5"]
        s += [f"{m}/Branch_0/Conv2d_0a_1x1"] + [f"{m}/Branch_1/{n}" for n in b1]
        s += [f"{m}/Branch_2/{n}" for n in ("Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_3x3")]
        s += [f"{m}/Branch_3/Conv2d_0b_1x1"]
    s += ["Mixed_6a/Branch_0/Conv2d_1a_1x1"]
    s += [f"Mixed_6a/Branch_1/{n}" for n in ("Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_1a_1x1")]
    for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        s += [f"{m}/Branch_0/Conv2d_0a_1x1"]
        s += [f"{m}/Branch_1/{n}" for n in ("Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1")]
        s += [f"{m}/Branch_2/{n}" for n in ("Conv2d_0a_1x1", "Conv2d_0b_7x1", "Conv2d_0c_1x7", "Conv2d_0d_7x1",
                                            "Conv2d_0e_1x7")]
        s += [f"{m}/Branch_3/Conv2d_0b_1x1"]
    s += ["Mixed_7a/Branch_0/Conv2d_0a_1x1", "Mixed_7a/Branch_0/Conv2d_1a_3x3"]
    s += [f"Mixed_7a/Branch_1/{n}" for n in ("Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1", "Conv2d_1a_3x3")]
    for m, last in (("Mixed_7b", "Conv2d_0b_3x1"), ("Mixed_7c", "Conv2d_0c_3x1")):
        s += [f"{m}/Branch_0/Conv2d_0a_1x1", f"{m}/Branch_1/Conv2d_0a_1x1", f"{m}/Branch_1/Conv2d_0b_1x3",
              f"{m}/Branch_1/{last}", f"{m}/Branch_2/Conv2d_0a_1x1", f"{m}/Branch_2/Conv2d_0b_3x3",
              f"{m}/Branch_2/Conv2d_0c_1x3", f"{m}/Branch_2/Conv2d_0d_3x1", f"{m}/Branch_3/Conv2d_0b_1x1"]
    return [f"InceptionV3/{x}" for x in s]


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory):
    """A V1 one-file checkpoint with slim names and random values (BN statistics too)."""
    arrays = synthetic.slim_inception_arrays(seed=7, random_stats=True)
    path = str(tmp_path_factory.mktemp("slim") / "inception_v3.ckpt")
    synthetic.write_slim_checkpoint(path, arrays)
    return path, arrays


def test_names_are_slims_in_creation_order():
    enc = inception.InceptionV3Base(75, 75)
    assert [layer.scope for layer in enc.layers] == slim_scopes()
    assert len(enc.variables()) == 376


def test_import_matches_a_direct_computation(fake_checkpoint):
    path, arrays = fake_checkpoint
    enc = inception.InceptionV3Base(75, 75)
    assert inception.load_slim_checkpoint(enc, path) == 376  # Logits/AuxLogits in the file are ignored
    for name, var in enc.variables().items():
        np.testing.assert_array_equal(np.asarray(var), arrays[name])

    images = tf.random.stateless_uniform([2, 75, 75, 3], seed=[1, 2], minval=-1, maxval=1)
    ours = enc(images, training=False).numpy()

    # 1. The first layer by hand from the raw arrays: conv (VALID, stride 2) -> BN without gamma -> ReLU.
    p = "InceptionV3/Conv2d_1a_3x3"
    conv = tf.nn.conv2d(images, arrays[f"{p}/weights"], strides=2, padding="VALID")
    bn = (conv - arrays[f"{p}/BatchNorm/moving_mean"]) / np.sqrt(arrays[f"{p}/BatchNorm/moving_variance"] + 1e-3)
    first = tf.nn.relu(bn + arrays[f"{p}/BatchNorm/beta"])
    layer0 = keras.Model(enc.model.input, enc.model.get_layer("InceptionV3__Conv2d_1a_3x3__relu").output)
    np.testing.assert_allclose(layer0(images).numpy(), first.numpy(), rtol=1e-4, atol=1e-4)

    # 2. The whole base: Keras' own InceptionV3 (include_top=False) given the same arrays in slim order.
    ref = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))

    def created(cls):  # Keras numbers auto-named layers in creation order: conv2d, conv2d_1, ...
        layers = [la for la in ref.layers if type(la) is cls]
        return sorted(layers, key=lambda la: int(la.name.rsplit("_", 1)[1]) if la.name[-1].isdigit() and "_" in
                      la.name else -1)

    convs, bns = created(keras.layers.Conv2D), created(keras.layers.BatchNormalization)
    assert len(convs) == len(bns) == 94
    for scope, c, b in zip(slim_scopes(), convs, bns, strict=True):
        c.kernel.assign(arrays[f"{scope}/weights"])
        b.beta.assign(arrays[f"{scope}/BatchNorm/beta"])
        b.moving_mean.assign(arrays[f"{scope}/BatchNorm/moving_mean"])
        b.moving_variance.assign(arrays[f"{scope}/BatchNorm/moving_variance"])
    expected = ref(images, training=False).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_missing_variables_are_reported(tmp_path):
    path = str(tmp_path / "bad.ckpt")
    synthetic.write_slim_checkpoint(path, {"InceptionV3/Logits/Conv2d_1c_1x1/biases": np.zeros(3, np.float32)})
    with pytest.raises(inception.CheckpointImportError, match="lacks 376 InceptionV3 variables"):
        inception.load_slim_checkpoint(inception.InceptionV3Base(75, 75), path)
    with pytest.raises(inception.CheckpointImportError, match="cannot read"):
        inception.load_slim_checkpoint(inception.InceptionV3Base(75, 75), str(tmp_path / "nope.ckpt"))
