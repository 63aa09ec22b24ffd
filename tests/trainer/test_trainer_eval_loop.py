"""eval_loop: which checkpoint comes next; the loop as a process (final step first, summaries, SIGTERM); fidelity:
its perplexity equals the reference formula computed here in numpy from the checkpoint's raw arrays."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from im2txt_trainer import eval_loop, train
from im2txt_trainer.eval_loop import pick

TINY = ["--batch_size=4", "--image_size=75", "--vocab_size=12", "--embedding_size=16", "--num_lstm_units=16"]


@pytest.mark.parametrize("available, done, finals, min_step, expected", [
    ((), (), (), 0, None),
    ((10, 20), (), (), 0, 20),  # the newest, not every one
    ((10, 20), (20,), (), 0, None),  # never the same checkpoint twice
    ((10, 20), (), (), 5000, None),  # the reference's min_global_step
    ((10, 20, 30), (), (20,), 0, 20),  # a stage's last checkpoint first, even when newer ones follow it
    ((10, 20, 30), (20,), (20,), 0, 30),
    ((10, 20), (), (20, 99), 5000, 20),  # a final step is evaluated whatever min_global_step says
    ((10, 20, 30), (), (10, 20), 0, 10),  # the lowest pending final first
])
def test_pick(available, done, finals, min_step, expected):
    assert pick(set(available), set(done), set(finals), min_step) == expected


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_perplexity(prefix: str, files: list[str], image_size: int) -> float:
    """The reference evaluate.py's figure, exp(sum(xent * weights) / sum(weights)), with the caption model written
    out in float64 numpy from the checkpoint's reference-named arrays (BasicLSTMCell, forget bias 1.0, the image
    embedding fed first). The Inception features come from the trainer's encoder (tested against
    keras.applications elsewhere) on the eval preprocessing (central crop)."""
    import tensorflow as tf

    from im2txt_trainer import data, image_processing, inference

    ckpt = tf.train.load_checkpoint(prefix)
    w_img, emb = ckpt.get_tensor("image_embedding/weights"), ckpt.get_tensor("seq_embedding/map")
    kernel, bias = ckpt.get_tensor("lstm/basic_lstm_cell/kernel"), ckpt.get_tensor("lstm/basic_lstm_cell/bias")
    w_out, b_out = ckpt.get_tensor("logits/weights"), ckpt.get_tensor("logits/biases")
    kernel, bias, w_out, b_out, emb, w_img = (np.asarray(x, np.float64) for x in (kernel, bias, w_out, b_out, emb,
                                                                                   w_img))
    model = inference.load_model(prefix, image_size)
    cfg = model.cfg
    units = w_out.shape[0]

    def cell(x, c, h):
        i, j, f, o = np.split(np.concatenate([x, h]) @ kernel + bias, 4)
        c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
        return c, np.tanh(c) * _sigmoid(o)

    sum_losses = sum_weights = 0.0
    for rec in data.read_records(files):
        image = image_processing.process_image(tf.constant(rec["image_data"]), False, cfg.image_height,
                                               cfg.image_width, cfg.resize_height, cfg.resize_width)
        feats = model.image_features(image[None], training=False, train_inception=False).numpy()[0]
        c, h = cell(feats.astype(np.float64) @ w_img, np.zeros(units), np.zeros(units))
        ids = rec["caption_ids"]
        for word, target in itertools.pairwise(ids):
            c, h = cell(emb[word], c, h)
            logits = h @ w_out + b_out
            log_z = logits.max() + np.log(np.exp(logits - logits.max()).sum())
            sum_losses += log_z - logits[target]  # weight 1 for every real word
            sum_weights += 1.0
    return math.exp(sum_losses / sum_weights)


def _scalars(eval_dir: Path) -> dict[str, dict[int, float]]:
    import tensorflow as tf

    out: dict[str, dict[int, float]] = {}
    for path in sorted(eval_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return out


@pytest.mark.slow
def test_loop_evaluates_each_stage_end_at_once_and_matches_the_reference_formula(synthetic, tmp_path):
    out, _ = synthetic
    td, eval_dir = tmp_path / "train", tmp_path / "train" / "eval"
    flags = [f"--input_file_pattern={out}/train-*", f"--train_dir={td}", *TINY]
    assert train.main([*flags, f"--inception_checkpoint_file={out}/inception_v3.ckpt", "--number_of_steps=2"]) == 0
    assert train.main([*flags, "--number_of_steps=4"]) == 0  # checkpoints 2 (stage 1's end) and 4 on disk
    val = sorted(str(p) for p in out.glob("val-*"))
    # An hour between two evaluations, as far as other checkpoints go; the stages' ends (2 and 6) come at once.
    proc = subprocess.Popen(
        [sys.executable, "-m", "im2txt_trainer.eval_loop", f"--checkpoint_dir={td}", f"--eval_dir={eval_dir}",
         f"--input_file_pattern={out}/val-*", "--final_steps=2,6", "--min_global_step=0", "--image_size=75",
         "--batch_size=3", "--eval_interval_secs=3600", "--poll_secs=0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = []
    try:
        for line in proc.stdout:
            if line.startswith(eval_loop.RESULT_PREFIX):
                results.append(json.loads(line[len(eval_loop.RESULT_PREFIX):]))
            if len(results) == 2:  # stage 2 ends while the interval runs: its last checkpoint is not kept waiting
                assert train.main([*flags, "--train_inception=True", "--number_of_steps=6"]) == 0
            if len(results) == 3:
                proc.send_signal(signal.SIGTERM)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [(r["global_step"], r["final"]) for r in results] == [(2, True), (4, False), (6, True)]
    scalars = _scalars(eval_dir)
    assert set(scalars["Perplexity"]) == {2, 4, 6}  # the reference's tag, at each checkpoint's global step
    for r in results:
        expected = reference_perplexity(str(td / f"model.ckpt-{r['global_step']}"), val, 75)
        assert r["perplexity"] == pytest.approx(expected, rel=1e-4)
        assert scalars["Perplexity"][r["global_step"]] == pytest.approx(expected, rel=1e-4)
        assert r["words"] > r["examples"] > 0
    assert len({r["perplexity"] for r in results}) == 3  # three different checkpoints were read


def test_missing_validation_records_are_named(tmp_path, capsys, termination_log):
    assert eval_loop.main([f"--checkpoint_dir={tmp_path}", f"--eval_dir={tmp_path}/eval",
                           f"--input_file_pattern={tmp_path}/val-?????-of-00004", "--once"]) == 1
    err = capsys.readouterr().err
    assert "val-?????-of-00004" in err
    assert "val-?????-of-00004" in termination_log.read_text()


def test_bad_flags_are_named(tmp_path, capsys):
    base = [f"--checkpoint_dir={tmp_path}", f"--eval_dir={tmp_path}/eval", "--input_file_pattern=x"]
    assert eval_loop.main([*base, "--bleu"]) == 1
    assert "--vocab_file is required with --bleu" in capsys.readouterr().err
    assert eval_loop.main([*base, "--final_steps=10,abc"]) == 1
    assert "--final_steps" in capsys.readouterr().err
    assert eval_loop.main([*base, "--num_eval_examples=0"]) == 1
    assert "--num_eval_examples must be positive" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "eval")
