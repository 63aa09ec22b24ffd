"""inference and evaluate command lines on a briefly trained checkpoint; their error messages."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest

from im2txt_trainer import build_data, evaluate, inference, synthetic, train

ROOT = Path(__file__).resolve().parents[2]


def _bench_steps_main():
    """bench/trainer_steps.py's main (a script beside the package, not part of it)."""
    spec = importlib.util.spec_from_file_location("trainer_steps", ROOT / "bench" / "trainer_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main

TINY = ["--batch_size=4", "--image_size=75", "--vocab_size=12", "--embedding_size=16", "--num_lstm_units=16"]


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    out, _ = synthetic
    td = tmp_path_factory.mktemp("tools") / "train"
    assert train.main([f"--input_file_pattern={out}/train-*", f"--train_dir={td}", *TINY,
                       f"--inception_checkpoint_file={out}/inception_v3.ckpt", "--number_of_steps=2"]) == 0
    return out, td


@pytest.mark.slow
def test_inference_prints_beam_captions(trained, capsys):
    out, td = trained
    from im2txt_trainer import data

    rec = data.read_records([str(out / "test-00000-of-00001")])[0]
    (out / "one.jpeg").write_bytes(rec["image_data"])
    assert inference.main([f"--checkpoint_path={td}", f"--vocab_file={out}/word_counts.txt",
                           f"--input_files={out}/one.jpeg", "--image_size=75"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Captions for image one.jpeg:")
    lines = re.findall(r"^  (\d)\) (.*) \(p=(\d\.\d+)\)$", text, re.M)
    assert [n for n, _, _ in lines] == ["0", "1", "2"]  # beam size 3
    probs = [float(p) for _, _, p in lines]
    assert probs == sorted(probs, reverse=True)


@pytest.mark.slow
def test_evaluate_reports_perplexity_and_bleu(trained, capsys):
    out, td = trained
    assert evaluate.main([f"--checkpoint_path={td}", f"--input_file_pattern={out}/val-*", "--image_size=75",
                          "--batch_size=2", f"--vocab_file={out}/word_counts.txt", "--bleu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["global_step"] == 2 and result["examples"] > 0
    # An untrained 12-word model is near uniform: perplexity of the order of the vocabulary.
    assert 1.0 < result["perplexity"] < 40 and math.isfinite(result["perplexity"])
    assert 0.0 <= result["bleu4"] <= 1.0


def test_missing_vocabulary_is_named(synthetic, tmp_path, capsys):
    out, _ = synthetic
    assert inference.main([f"--checkpoint_path={tmp_path}", f"--vocab_file={tmp_path}/word_counts.txt",
                           f"--input_files={out}/*.jpg"]) == 1
    assert "vocabulary file not found" in capsys.readouterr().err
    assert evaluate.main([f"--checkpoint_path={tmp_path}", f"--input_file_pattern={out}/val-*", "--bleu"]) == 1
    assert "--vocab_file is required with --bleu" in capsys.readouterr().err


def test_no_checkpoint_is_named(synthetic, tmp_path, capsys):
    out, _ = synthetic
    assert evaluate.main([f"--checkpoint_path={tmp_path}", f"--input_file_pattern={out}/val-*"]) == 1
    assert "no model.ckpt-N checkpoint" in capsys.readouterr().err


# Every tool takes full flag names only. Each abbreviation below carries a bad value, so that a parser that
# still expanded it would fail at once with a different message instead of running.
@pytest.mark.parametrize("main, argv", [
    (inference.main, ["--checkpoint_path=c", "--vocab_file=v", "--input_files=i", "--image_siz=x"]),
    (evaluate.main, ["--checkpoint_path=c", "--input_file_pattern=p", "--beam_siz=x"]),
    (build_data.main, ["--train_image_dir=a", "--val_image_dir=b", "--train_captions_file=c",
                       "--val_captions_file=d", "--output_dir=e", "--train_shard=x"]),
    (synthetic.main, ["--out=o", "--see=x"]),
    (_bench_steps_main(), ["--batc=x"]),
    (train.main, ["--input_file_pattern=p", "--train_dir=t", "--number_of_st=x"]),
], ids=["inference", "evaluate", "build_data", "synthetic", "bench", "train"])
def test_tools_refuse_abbreviated_flags(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert f"unrecognized arguments: {argv[-1]}" in capsys.readouterr().err
