"""Checkpoints: reference names and shapes, legacy LSTM names, keep-N, atomic under a killed save."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer import checkpoints
from im2txt_trainer.config import ModelConfig
from im2txt_trainer.model import ShowAndTell


@pytest.fixture(scope="module")
def model():
    return ShowAndTell(ModelConfig.for_image_size(75, vocab_size=40, embedding_size=8, num_lstm_units=6))


def test_reference_names_and_shapes(model, tmp_path):
    prefix = checkpoints.save(str(tmp_path), model.named_variables(), 7)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    assert sum(n.startswith("InceptionV3/") for n in shapes) == 376
    assert shapes["InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights"] == [5, 5, 48, 64]
    assert shapes["InceptionV3/Conv2d_1a_3x3/BatchNorm/moving_variance"] == [32]
    assert not any(n.endswith("gamma") for n in shapes)
    assert {n: s for n, s in shapes.items() if not n.startswith("InceptionV3/")} == {
        "image_embedding/weights": [2048, 8], "seq_embedding/map": [40, 8],
        "lstm/basic_lstm_cell/kernel": [8 + 6, 4 * 6], "lstm/basic_lstm_cell/bias": [4 * 6],
        "logits/weights": [6, 40], "logits/biases": [40], "global_step": []}
    assert tf.train.load_checkpoint(prefix).get_tensor("global_step") == 0
    assert (tmp_path / "checkpoint").read_text() == ('model_checkpoint_path: "model.ckpt-7"\n'
                                                     'all_model_checkpoint_paths: "model.ckpt-7"\n')
    assert tf.train.latest_checkpoint(str(tmp_path)) == prefix  # TF's own reader agrees


def test_restore_accepts_the_legacy_lstm_names(model, tmp_path):
    variables = model.named_variables()
    values = {n: tf.convert_to_tensor(v).numpy() for n, v in variables.items()}
    values["lstm/BasicLSTMCell/Linear/Matrix"] = values.pop("lstm/basic_lstm_cell/kernel") + 1.0
    values["lstm/BasicLSTMCell/Linear/Bias"] = values.pop("lstm/basic_lstm_cell/bias") + 2.0
    values["global_step"] = np.int64(1234)
    names = sorted(values)
    prefix = str(tmp_path / "model.ckpt-1234")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
    assert checkpoints.restore_latest(str(tmp_path), variables) == prefix  # no index: found by name
    np.testing.assert_array_equal(model.lstm_kernel.numpy(), values["lstm/BasicLSTMCell/Linear/Matrix"])
    np.testing.assert_array_equal(model.lstm_bias.numpy(), values["lstm/BasicLSTMCell/Linear/Bias"])
    assert int(model.global_step.numpy()) == 1234
    model.global_step.assign(0)


def test_keeps_the_newest_five(tmp_path):
    v = {"global_step": tf.Variable(0, dtype=tf.int64), "w": tf.Variable(np.ones(3, np.float32))}
    for step in range(1, 9):
        v["global_step"].assign(step)
        checkpoints.save(str(tmp_path), v, step, max_to_keep=5)
    kept = sorted(int(f.split("-")[1].split(".")[0]) for f in os.listdir(tmp_path) if f.endswith(".index"))
    assert kept == [4, 5, 6, 7, 8]
    assert [os.path.basename(p) for p in checkpoints.listed_checkpoints(str(tmp_path))] == [
        f"model.ckpt-{i}" for i in (4, 5, 6, 7, 8)]


def test_pruning_keeps_every_bundle_another_run_wrote(tmp_path, monkeypatch):
    """Checkpoints a user brought (the reference Saver's, with no ledger) and those of another training (the ledger
    names its uid) stay, whatever their step; this run drops only its own beyond the newest five."""
    v = {"global_step": tf.Variable(0, dtype=tf.int64), "w": tf.Variable(np.ones(3, np.float32))}
    monkeypatch.setenv("IM2TXT_RUN_ID", "uid-of-a-deleted-training")
    for step in (2, 100):
        checkpoints.save(str(tmp_path), v, step)
    scratch = tmp_path / "scratch"
    checkpoints.save(str(scratch), v, 1)
    for f in os.listdir(scratch):  # a bundle no ledger names
        if f.startswith("model.ckpt-1."):
            (tmp_path / f).write_bytes((scratch / f).read_bytes())
    theirs = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path) if f.startswith("model.ckpt-")}
    monkeypatch.setenv("IM2TXT_RUN_ID", "uid-of-this-training")
    for step in range(3, 12):
        checkpoints.save(str(tmp_path), v, step, max_to_keep=5)
    steps = sorted(int(f.split("-")[1].split(".")[0]) for f in os.listdir(tmp_path) if f.endswith(".index"))
    assert steps == [1, 2, 7, 8, 9, 10, 11, 100]
    assert all((tmp_path / f).read_bytes() == data for f, data in theirs.items())
    # The index names this run's bundles only: a resumed run restores its own newest.
    assert [os.path.basename(p) for p in checkpoints.listed_checkpoints(str(tmp_path))] == [
        f"model.ckpt-{i}" for i in (7, 8, 9, 10, 11)]


def test_a_killed_save_never_becomes_the_latest(tmp_path):
    v = {"global_step": tf.Variable(5, dtype=tf.int64), "w": tf.Variable(np.full(3, 5.0, np.float32))}
    checkpoints.save(str(tmp_path), v, 5)
    # A save killed half way: its temporary files exist, and even a data file under the final name.
    (tmp_path / ".tmp-model.ckpt-9-123.data-00000-of-00001").write_bytes(b"partial")
    (tmp_path / "model.ckpt-9.data-00000-of-00001").write_bytes(b"partial")
    v["w"].assign(np.zeros(3, np.float32))
    assert checkpoints.restore_latest(str(tmp_path), v) == str(tmp_path / "model.ckpt-5")
    np.testing.assert_array_equal(v["w"].numpy(), np.full(3, 5.0))
    checkpoints.remove_partial(str(tmp_path))
    assert not any(f.startswith(".tmp-") for f in os.listdir(tmp_path))


def test_an_unreadable_newest_checkpoint_falls_back(tmp_path):
    v = {"global_step": tf.Variable(1, dtype=tf.int64), "w": tf.Variable(np.ones(3, np.float32))}
    checkpoints.save(str(tmp_path), v, 1)
    v["w"].assign(np.full(3, 2.0, np.float32))
    checkpoints.save(str(tmp_path), v, 2)
    (tmp_path / "model.ckpt-2.data-00000-of-00001").write_bytes(b"garbage")
    assert checkpoints.restore_latest(str(tmp_path), v) == str(tmp_path / "model.ckpt-1")
    np.testing.assert_array_equal(v["w"].numpy(), np.ones(3))


def test_shape_mismatch_is_explained(model, tmp_path):
    other = ShowAndTell(ModelConfig.for_image_size(75, vocab_size=41, embedding_size=8, num_lstm_units=6))
    checkpoints.save(str(tmp_path), other.named_variables(), 3)
    with pytest.raises(checkpoints.CheckpointError, match=r"seq_embedding/map has shape .*vocab_size"):
        checkpoints.restore_latest(str(tmp_path), model.named_variables())


def test_a_reference_index_with_foreign_absolute_paths(tmp_path):
    """A train_dir downloaded from elsewhere: the index names paths that do not exist here."""
    v = {"global_step": tf.Variable(5, dtype=tf.int64), "w": tf.Variable(np.full(3, 5.0, np.float32))}
    checkpoints.save(str(tmp_path), v, 5)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/old/pod/output/model.ckpt-5"\n'
                                         'all_model_checkpoint_paths: "/old/pod/output/model.ckpt-5"\n')
    v["w"].assign(np.zeros(3, np.float32))
    assert checkpoints.restore_latest(str(tmp_path), v) == str(tmp_path / "model.ckpt-5")
    checkpoints.save(str(tmp_path), v, 6)
    assert [os.path.basename(p) for p in checkpoints.listed_checkpoints(str(tmp_path))] == [
        "model.ckpt-5", "model.ckpt-6"]  # still counted, so keep-5 rotates it out in time


def test_the_reference_saver_restores_our_checkpoint(model, tmp_path):
    """A tf.compat.v1 graph with the reference's variable names and dtypes (global_step int32, as the reference's
    tf.Variable(0) is) restores a checkpoint written here with tf.compat.v1.train.Saver."""
    variables = model.named_variables()
    model.global_step.assign(42)
    try:
        prefix = checkpoints.save(str(tmp_path), variables, 42)
        expected = {n: np.asarray(tf.convert_to_tensor(v)) for n, v in variables.items()}
    finally:
        model.global_step.assign(0)
    older = str(tmp_path / "older" / "model.ckpt-42")  # global_step as this trainer wrote it before: int64
    os.makedirs(os.path.dirname(older))
    names = sorted(expected)
    tf.raw_ops.SaveV2(prefix=older, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(expected[n]) for n in names])

    graph = tf.Graph()
    with graph.as_default():
        reference = {n: tf.compat.v1.get_variable(n, shape=v.shape, dtype=tf.int32 if n == "global_step" else
                                                  tf.float32, initializer=tf.compat.v1.zeros_initializer())
                     for n, v in expected.items()}
        saver = tf.compat.v1.train.Saver(list(reference.values()))
        with tf.compat.v1.Session(graph=graph) as sess:
            with pytest.raises(tf.errors.InvalidArgumentError, match="expected dtype int32 does not equal original "
                                                                     "dtype int64"):
                saver.restore(sess, older)  # what the reference said to this trainer's checkpoints before
            saver.restore(sess, prefix)
            restored = sess.run(reference)
    assert len(restored) == 376 + 7
    for name, value in expected.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    assert restored["global_step"] == 42


def test_an_older_int64_global_step_still_restores(tmp_path):
    v = {"global_step": tf.Variable(0, dtype=tf.int64), "w": tf.Variable(np.zeros(3, np.float32))}
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "model.ckpt-77"), tensor_names=["global_step", "w"],
                      shape_and_slices=["", ""], tensors=[tf.constant(77, tf.int64), tf.ones(3)])
    assert checkpoints.restore_latest(str(tmp_path), v) == str(tmp_path / "model.ckpt-77")
    assert int(v["global_step"].numpy()) == 77
    np.testing.assert_array_equal(v["w"].numpy(), np.ones(3))
    v["global_step"].assign(78)
    prefix = checkpoints.save(str(tmp_path), v, 78)
    assert tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()["global_step"] == tf.int32


def test_a_global_step_beyond_int32_is_kept_whole(tmp_path):
    v = {"global_step": tf.Variable(2**31, dtype=tf.int64)}
    reader = tf.train.load_checkpoint(checkpoints.save(str(tmp_path), v, 2**31))
    assert reader.get_variable_to_dtype_map()["global_step"] == tf.int64 and reader.get_tensor("global_step") == 2**31


def test_pruning_never_deletes_outside_train_dir(tmp_path):
    """The reference's Saver writes absolute paths: an index naming another directory's bundles (here, the directory
    a train_dir was copied from, still on this machine) must neither be read nor pruned there."""
    elsewhere, td = tmp_path / "elsewhere", tmp_path / "train"
    v = {"global_step": tf.Variable(0, dtype=tf.int64), "w": tf.Variable(np.zeros(3, np.float32))}
    for step in (1, 2, 3):
        v["global_step"].assign(step)
        v["w"].assign(np.full(3, -step, np.float32))
        checkpoints.save(str(elsewhere), v, step)
    td.mkdir()
    for f in os.listdir(elsewhere):  # the copy holds other values than the original
        if f.startswith("model.ckpt-"):
            (td / f).write_bytes((elsewhere / f).read_bytes())
    v["w"].assign(np.full(3, 3.0, np.float32))
    checkpoints.save(str(tmp_path / "scratch"), v, 3)
    for f in os.listdir(tmp_path / "scratch"):
        if f.startswith("model.ckpt-3"):
            (td / f).write_bytes((tmp_path / "scratch" / f).read_bytes())
    (td / "checkpoint").write_text("".join(f'{k}: "{elsewhere}/model.ckpt-{s}"\n' for k, s in (
        ("model_checkpoint_path", 3), ("all_model_checkpoint_paths", 1), ("all_model_checkpoint_paths", 2),
        ("all_model_checkpoint_paths", 3))))
    before = {f: (elsewhere / f).read_bytes() for f in os.listdir(elsewhere)}

    v["w"].assign(np.zeros(3, np.float32))
    assert checkpoints.restore_latest(str(td), v) == str(td / "model.ckpt-3")
    np.testing.assert_array_equal(v["w"].numpy(), np.full(3, 3.0))  # train_dir's copy, not the original
    for step in range(4, 9):
        checkpoints.save(str(td), v, step, max_to_keep=2)
    assert {f: (elsewhere / f).read_bytes() for f in os.listdir(elsewhere)} == before
    # The copied bundles are no bundles of this run (no ledger names them): kept, like any other run's.
    assert sorted(f for f in os.listdir(td) if f.endswith(".index")) == [
        f"model.ckpt-{s}.index" for s in (1, 2, 3, 7, 8)]
    assert "elsewhere" not in (td / "checkpoint").read_text()
