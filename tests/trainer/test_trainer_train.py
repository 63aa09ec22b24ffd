"""train.py end to end on tiny data: two stages, checkpoints, SIGTERM, bad input."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer import checkpoints, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--batch_size=4", "--image_size=75", "--vocab_size=12", "--embedding_size=16", "--num_lstm_units=16"]

STEP_LINE = re.compile(r"global step (\d+): loss = (\d+\.\d+) \((\d+\.\d+) sec/step\)")


def _flags(out, td, *extra):
    return [f"--input_file_pattern={out}/train-?????-of-00002", f"--train_dir={td}", *TINY, "--seed=5", *extra]


def _slim(out):
    return tf.train.load_checkpoint(str(out / "inception_v3.ckpt"))


@pytest.mark.slow
def test_stage1_then_stage2(synthetic, tmp_path, caplog):
    out, _ = synthetic
    td = tmp_path / "train"
    caplog.set_level(logging.INFO)
    # Stage 1, saving after every step (interval ~0): six checkpoints written, five kept.
    assert train.main(_flags(out, td, f"--inception_checkpoint_file={out}/inception_v3.ckpt",
                             "--number_of_steps=6", "--save_interval_secs=1e-9")) == 0
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(caplog.text)]
    assert steps == [1, 2, 3, 4, 5, 6]
    s1 = tf.train.load_checkpoint(str(td / "model.ckpt-6"))
    slim = _slim(out)
    inception_names = [n for n in s1.get_variable_to_shape_map() if n.startswith("InceptionV3/")]
    assert len(inception_names) == 376
    for name in inception_names:  # frozen in stage 1: weights and BN statistics as in the slim file
        np.testing.assert_array_equal(s1.get_tensor(name), slim.get_tensor(name))
    assert not np.array_equal(s1.get_tensor("logits/weights"),
                              tf.train.load_checkpoint(str(td / "model.ckpt-2")).get_tensor("logits/weights"))
    assert sorted(os.path.basename(p) for p in checkpoints.listed_checkpoints(str(td))) == [
        f"model.ckpt-{i}" for i in (2, 3, 4, 5, 6)]

    # Stage 2 as the Job runs it: no Inception file, --train_inception=True, absolute step target.
    caplog.clear()
    assert train.main(_flags(out, td, "--train_inception=True", "--number_of_steps=9",
                             "--save_interval_secs=1e-9")) == 0
    assert "resumed from" in caplog.text and "global step 6" in caplog.text
    assert [int(m.group(1)) for m in STEP_LINE.finditer(caplog.text)] == [7, 8, 9]
    s2 = tf.train.load_checkpoint(str(td / "model.ckpt-9"))
    assert s2.get_tensor("global_step") == 9
    for kind in ("weights", "BatchNorm/beta", "BatchNorm/moving_mean"):
        name = f"InceptionV3/Mixed_7c/Branch_3/Conv2d_0b_1x1/{kind}"
        assert not np.allclose(s2.get_tensor(name), slim.get_tensor(name)), name  # fine-tuned in stage 2
    kept = sorted(int(f[len("model.ckpt-"):-len(".index")]) for f in os.listdir(td) if f.endswith(".index"))
    assert kept == [5, 6, 7, 8, 9]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(td))

    # A retried Job whose target is already reached exits 0 at once.
    caplog.clear()
    assert train.main(_flags(out, td, "--train_inception=True", "--number_of_steps=9")) == 0
    assert "nothing to do" in caplog.text


@pytest.mark.slow
def test_sigterm_saves_and_a_restart_resumes(synthetic, tmp_path, caplog, termination_log):
    out, _ = synthetic
    td = tmp_path / "train"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "trainer" / "train.py"),
         *_flags(out, td, f"--inception_checkpoint_file={out}/inception_v3.ckpt", "--number_of_steps=100000")],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "IM2TXT_SAVE_INTERVAL_SECS": "3600"})
    try:
        seen = 0
        for line in proc.stderr:
            m = STEP_LINE.search(line)
            if m and int(m.group(1)) >= 3:
                seen = int(m.group(1))
                proc.send_signal(signal.SIGTERM)
                break
        assert seen >= 3, "training never logged step 3"
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, rest  # saved, but the target was not reached
    prefix = checkpoints.candidates(str(td))[0]
    step = int(tf.train.load_checkpoint(prefix).get_tensor("global_step"))
    assert step >= seen and prefix.endswith(f"model.ckpt-{step}")
    assert not [f for f in os.listdir(td) if f.startswith(".tmp-")]
    assert termination_log.read_text() == (f"trainer: stopped by signal 15 at global step {step} before "
                                           "--number_of_steps=100000; checkpoint saved\n")

    caplog.set_level(logging.INFO)
    assert train.main(_flags(out, td, f"--number_of_steps={step + 2}")) == 0  # no Inception file needed
    assert f"at global step {step}" in caplog.text
    assert [int(m.group(1)) for m in STEP_LINE.finditer(caplog.text)] == [step + 1, step + 2]
    # How it ended, for the operator: the last step's loss as logged (one pod list tells it, no log read).
    logged = list(STEP_LINE.finditer(caplog.text))[-1][0]
    assert termination_log.read_text() == f"trainer: reached {logged}\n"


def _fails(capsys, argv, pattern):
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(pattern, err), err


def test_no_files_match(tmp_path, capsys):
    _fails(capsys, [f"--input_file_pattern={tmp_path}/train-?????-of-00256", f"--train_dir={tmp_path}/t"],
           r"--input_file_pattern: no files match .*train-\?\?\?\?\?-of-00256")


def test_no_inception_file_at_step_0(synthetic, tmp_path, capsys):
    out, _ = synthetic
    _fails(capsys, _flags(out, tmp_path / "t", f"--inception_checkpoint_file={tmp_path}/missing.ckpt"),
           r"--inception_checkpoint_file .*missing.ckpt' not found \(needed at global step 0")
    _fails(capsys, _flags(out, tmp_path / "t"), r"--inception_checkpoint_file is required at global step 0")


def test_train_dir_not_writable(synthetic, tmp_path, capsys):
    out, _ = synthetic
    (tmp_path / "file").write_text("x")
    _fails(capsys, _flags(out, tmp_path / "file" / "train"), r"--train_dir .*file/train' is not writable")


def test_corrupt_record(synthetic, tmp_path, capsys):
    out, _ = synthetic
    bad = tmp_path / "train-00000-of-00001"
    bad.write_bytes((out / "train-00000-of-00002").read_bytes()[:50] + b"\x00garbage" * 20)
    _fails(capsys, [f"--input_file_pattern={bad}", f"--train_dir={tmp_path}/t",
                    f"--inception_checkpoint_file={out}/inception_v3.ckpt", *TINY, "--number_of_steps=3"],
           r"corrupt input record in --input_file_pattern")


def test_bad_flag_values(tmp_path, capsys):
    _fails(capsys, ["--input_file_pattern=x", f"--train_dir={tmp_path}", "--image_size=64"],
           r"--image_size must be >= 75")
    with pytest.raises(SystemExit):
        train.main(["--input_file_pattern=x", f"--train_dir={tmp_path}", "--train_inception=maybe"])


def test_save_interval_default_from_env(monkeypatch):
    monkeypatch.setenv("IM2TXT_SAVE_INTERVAL_SECS", "42")
    assert train.build_parser().parse_args(["--input_file_pattern=x", "--train_dir=y"]).save_interval_secs == 42
    monkeypatch.delenv("IM2TXT_SAVE_INTERVAL_SECS")
    a = train.build_parser().parse_args(["--input_file_pattern=x", "--train_dir=y", "--train_inception=True"])
    assert (a.save_interval_secs, a.number_of_steps, a.batch_size, a.train_inception) == (600, 1000000, 32, True)



# The operator reserves these flags (the Job sets them); argparse must not let extraArgs reach them by a prefix.
@pytest.mark.parametrize("abbreviated", [
    ["--train_d=/elsewhere"], ["--train_d", "/elsewhere"], ["--number_of_st=5"], ["--input_file_pat=/other/*"],
    ["--inception_checkpoint=/other.ckpt"],
])
def test_reserved_flags_are_not_reachable_by_abbreviation(abbreviated, capsys):
    with pytest.raises(SystemExit) as e:
        train.build_parser().parse_args(["--input_file_pattern=x", "--train_dir=y", *abbreviated])
    assert e.value.code == 2
    assert f"unrecognized arguments: {' '.join(abbreviated)}" in capsys.readouterr().err


def test_full_flag_names_still_parse():
    a = train.build_parser().parse_args([
        "--input_file_pattern=/data/data/train-?????-of-00256", "--inception_checkpoint_file=/data/data/i.ckpt",
        "--train_dir=/data/output/", "--number_of_steps", "5", "--train_inception=True", "--log_every_n_steps=10"])
    assert (a.input_file_pattern, a.inception_checkpoint_file, a.train_dir, a.number_of_steps, a.train_inception,
            a.log_every_n_steps) == ("/data/data/train-?????-of-00256", "/data/data/i.ckpt", "/data/output/", 5,
                                     True, 10)


@pytest.mark.slow
def test_precomputed_embeddings_for_stage1(synthetic, tmp_path, caplog):
    import tensorflow as tf

    from im2txt_trainer import data, inception, inference
    from im2txt_trainer.config import ModelConfig

    out, info = synthetic
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO)
    flags = _flags(out, tmp_path / "t", f"--inception_checkpoint_file={out}/inception_v3.ckpt",
                   "--precompute_embeddings=True", f"--embeddings_cache_dir={cache}")
    assert train.main([*flags, "--number_of_steps=3"]) == 0
    assert "precomputed 18 image embeddings" in caplog.text
    (cached,) = cache.iterdir()
    assert not (tmp_path / "t" / cached.name).exists()  # not in train_dir, which is uploaded
    # The cache holds the frozen encoder's pooled output on the central crop, in file order.
    first = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(str(cached)))).numpy())
    rec = data.read_records(info["splits"]["train"][:1])[0]
    assert list(first.features.feature["image/caption_ids"].int64_list.value) == rec["caption_ids"]
    enc = inception.InceptionV3Base(75, 75)
    inception.load_slim_checkpoint(enc, str(out / "inception_v3.ckpt"))
    image = inference.load_image("", ModelConfig.for_image_size(75), rec["image_data"])
    expected = tf.reduce_mean(enc(image[None]), [1, 2])[0].numpy()
    np.testing.assert_allclose(first.features.feature["features"].float_list.value, expected, rtol=1e-4, atol=1e-5)
    caplog.clear()
    assert train.main([*flags, "--number_of_steps=5"]) == 0
    assert "reusing precomputed image embeddings" in caplog.text
    assert [int(m.group(1)) for m in STEP_LINE.finditer(caplog.text)] == [4, 5]


@pytest.mark.slow
def test_bfloat16_encoder_runs(synthetic, tmp_path, caplog):
    out, _ = synthetic
    caplog.set_level(logging.INFO)
    assert train.main(_flags(out, tmp_path / "t", f"--inception_checkpoint_file={out}/inception_v3.ckpt",
                             "--number_of_steps=2", "--mixed_precision=true")) == 0
    losses = [float(m.group(2)) for m in STEP_LINE.finditer(caplog.text)]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert "mixed_precision=True" in caplog.text


def test_caption_ids_beyond_vocab_size(synthetic, tmp_path, capsys):
    out, _ = synthetic
    flags = [f for f in _flags(out, tmp_path / "t", f"--inception_checkpoint_file={out}/inception_v3.ckpt",
                               "--number_of_steps=2") if not f.startswith("--vocab_size")]
    _fails(capsys, [*flags, "--vocab_size=3"], r"bad input batch \(are all caption ids < --vocab_size=3\?\)")
