"""A failing trainer command leaves one bounded `trainer: <reason>` line as the container's termination message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from im2txt_trainer import cli, export, termination, train

ROOT = Path(__file__).resolve().parents[2]


def test_the_message_is_one_bounded_line():
    assert termination.message("--train_dir '/data/output/' is not writable: Permission denied") == (
        "trainer: --train_dir '/data/output/' is not writable: Permission denied")
    assert termination.message("first\n  second\r\nthird\t.") == "trainer: first second third ."
    long = termination.message("x" * 5000)
    assert len(long) == termination.MAX_CHARS and long.startswith("trainer: xxx") and long.endswith("x...")


def test_a_training_that_ends_well_says_where_in_its_log_lines_words():
    """The operator parses it with the same pattern as the log (progress.last_step): step, loss and sec/step."""
    assert termination.reached(300, 1.48081, 0.5204) == "reached global step 300: loss = 1.4808 (0.520 sec/step)"
    assert termination.reached(300) == "reached global step 300"  # resumed at its target: no step trained
    assert termination.reached(3, float("nan"), 0.1) == "reached global step 3: loss = nan (0.100 sec/step)"


def test_where_it_goes(tmp_path, monkeypatch):
    assert termination.path({"IM2TXT_TERMINATION_LOG": "/tmp/t"}) == "/tmp/t"
    assert termination.path({"IM2TXT_TERMINATION_LOG": ""}) is None  # set but empty: nowhere
    # Unset: Kubernetes' /dev/termination-log, only where it exists (a container); nothing is created outside one.
    default = tmp_path / "dev-termination-log"
    monkeypatch.setattr(termination, "DEFAULT_PATH", str(default))
    assert termination.path({}) is None
    termination.write("no container", {})
    assert not default.exists()
    default.write_text("")
    assert termination.path({}) == str(default)
    termination.write("in a container", {})
    assert default.read_text() == "trainer: in a container\n"


def test_an_unwritable_path_is_ignored(tmp_path, capsys):
    termination.write("reason", {"IM2TXT_TERMINATION_LOG": str(tmp_path / "missing" / "log")})
    termination.write("reason", {"IM2TXT_TERMINATION_LOG": str(tmp_path)})  # a directory
    assert not (tmp_path / "missing").exists()
    assert cli.fail("prog", "still exits") == 1  # the env var of this test names a writable file: still one line
    assert capsys.readouterr().err == "prog: error: still exits\n"


def test_an_unexpected_exception_leaves_its_first_line(termination_log):
    def crash() -> int:
        raise RuntimeError("out of memory\nlong details")

    with pytest.raises(RuntimeError):  # the traceback is still the log's
        cli.run("train.py", crash, (ValueError,))
    assert termination_log.read_text() == "trainer: train.py: RuntimeError: out of memory\n"
    assert cli.run("train.py", lambda: 0, (ValueError,)) == 0
    assert termination_log.read_text() == "trainer: train.py: RuntimeError: out of memory\n"  # success writes nothing


@pytest.mark.slow
def test_train_py_writes_its_reason_and_exits_1(synthetic, tmp_path, termination_log):
    """As the container runs it: /data/train.py with the env var set; an unwritable --train_dir is named."""
    out, _ = synthetic
    (tmp_path / "file").write_text("x")
    train_dir = tmp_path / "file" / "train"
    proc = subprocess.run([sys.executable, str(ROOT / "trainer" / "train.py"), f"--input_file_pattern={out}/train-*",
                           f"--train_dir={train_dir}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    reason = f"--train_dir {str(train_dir)!r} is not writable: Not a directory"
    assert f"train.py: error: {reason}\n" in proc.stderr
    assert termination_log.read_text() == f"trainer: {reason}\n"


def test_a_bad_command_line_is_a_reason_too(termination_log, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--input_file_pattern=x", "--train_dir=y", "--train_inception=maybe"])
    assert e.value.code == 2
    assert termination_log.read_text() == (
        "trainer: argument --train_inception: expected True or False, got 'maybe'\n")
    assert train.main(["--input_file_pattern=x", "--train_dir=y", "--image_size=64"]) == 1
    assert termination_log.read_text() == "trainer: --image_size must be >= 75 (InceptionV3's minimum), got 64\n"


def test_environment_errors_are_reasons(termination_log, monkeypatch, capsys):
    monkeypatch.setenv("IM2TXT_SAVE_INTERVAL_SECS", "soon")
    with pytest.raises(SystemExit) as e:
        train.build_parser()
    assert e.value.code == 1
    assert capsys.readouterr().err == "train.py: error: environment IM2TXT_SAVE_INTERVAL_SECS='soon' is not a number " \
                                      "of seconds\n"
    assert termination_log.read_text() == (
        "trainer: environment IM2TXT_SAVE_INTERVAL_SECS='soon' is not a number of seconds\n")


def test_export_writes_its_reason(tmp_path, termination_log, capsys):
    (tmp_path / "word_counts.txt").write_text("<S> 3\n</S> 3\na 3\n")
    assert export.main([f"--checkpoint_path={tmp_path}", f"--vocab_file={tmp_path}/word_counts.txt",
                        f"--export_dir={tmp_path}/e"]) == 1
    reason = f"--checkpoint_path: no model.ckpt-N checkpoint in {str(tmp_path)!r}"
    assert capsys.readouterr().err == f"export: error: {reason}\n"
    assert termination_log.read_text() == f"trainer: {reason}\n"
