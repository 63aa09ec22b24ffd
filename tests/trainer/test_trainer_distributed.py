"""Distribution: a MirroredStrategy step equals a one-device step; two workers train through train.py."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from im2txt_trainer import checkpoints, train

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PY = str(ROOT / "trainer" / "train.py")
TINY = ["--batch_size=4", "--image_size=75", "--vocab_size=12", "--embedding_size=16", "--num_lstm_units=16"]
STEP_LINE = re.compile(r"global step (\d+): loss = (\d+\.\d+)")
CAPTION_VARIABLES = ["image_embedding/weights", "seq_embedding/map", "lstm/basic_lstm_cell/kernel",
                     "lstm/basic_lstm_cell/bias", "logits/weights", "logits/biases"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CONFIG", "IM2TXT_WORKER_HOSTS", "JOB_COMPLETION_INDEX", "IM2TXT_DISTRIBUTION")}
    return {**env, "PYTHONPATH": str(ROOT / "trainer"), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _flags(out: Path, td: Path, *extra: str) -> list[str]:
    return [f"--input_file_pattern={out}/train-?????-of-00002", f"--train_dir={td}", *TINY, "--seed=5", *extra]


@pytest.mark.slow
def test_mirrored_step_equals_one_device_step():
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("trainer_mirrored_check.py"))],
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    *steps, broadcast = map(json.loads, proc.stdout.splitlines())
    results = {r["stage"]: r for r in steps}
    assert sorted(results) == [1, 2]
    for stage, r in results.items():
        np.testing.assert_allclose(r["loss_mirrored"], r["loss_single"], rtol=1e-5, err_msg=f"stage {stage}")
        worst = max(r["max_diff"], key=r["max_diff"].get)
        assert r["max_diff"][worst] <= 1e-5, (stage, worst, r["max_diff"][worst])
        assert r["replicas_agree"], stage  # every replica holds the same values after the update
        assert r["moved"]["global_step"] == 1
    # The comparisons are not vacuous: the steps moved what they train far beyond the tolerance.
    s1, s2 = results[1]["moved"], results[2]["moved"]
    assert min(s1[n] for n in CAPTION_VARIABLES) > 1e-4
    assert max(v for n, v in s1.items() if n.startswith("InceptionV3/")) == 0.0  # frozen in stage 1
    kernels = [n for n in s2 if n.endswith("/weights") and n.startswith("InceptionV3/")]
    assert len(kernels) == 94 and sum(s2[n] > 1e-4 for n in kernels) >= 70
    variances = [n for n in s2 if n.endswith("/moving_variance")]
    assert min(s2[n] for n in variances) > 1e-3  # batch statistics of the global batch, synchronised
    # The chief's values reach every worker exactly (replica 1 held other values, a NaN among them).
    assert broadcast["broadcast"] == [[[1.5, -2.0, 3.0], [1.5, -2.0, 3.0]], [7, 7]]
    assert broadcast["any_worker"] == [False, True]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_workers(argv: list[str], env_for, run: Path) -> tuple[list[subprocess.Popen], list[Path]]:
    """Worker 0 and worker 1 of one training, each with its own TMPDIR (run/tmp<i>) and log (run/worker<i>.log)."""
    procs, logs = [], []
    for i in range(2):
        (run / f"tmp{i}").mkdir(parents=True)
        logs.append(run / f"worker{i}.log")
        with logs[i].open("w") as log:
            procs.append(subprocess.Popen([sys.executable, TRAIN_PY, *argv], stderr=log, text=True,
                                          env=_env(TMPDIR=str(run / f"tmp{i}"), **env_for(i))))
    return procs, logs


def _worker_dirs(tmp: Path) -> list[str]:
    return [p.name for p in tmp.iterdir() if p.name.startswith("im2txt-worker")]


def _wait(procs: list[subprocess.Popen], timeout: float = 480) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _global_steps(td: Path) -> dict[int, int]:
    """model.ckpt-N listed in the index -> the global_step stored in it."""
    return {int(p.rsplit("-", 1)[1]): int(tf.train.load_checkpoint(p).get_tensor("global_step"))
            for p in checkpoints.listed_checkpoints(str(td))}


@pytest.mark.slow
def test_two_workers_train_both_stages_and_checkpoints_resume_either_way(synthetic, tmp_path, caplog):
    out, _ = synthetic
    td = tmp_path / "train"
    every_step = "--save_interval_secs=1e-9"

    # Stage 1 on two workers described by TF_CONFIG (global batch 4 = 2 workers x 2), until worker 1 dies.
    hosts = [f"localhost:{p}" for p in _free_ports(2)]
    procs, logs = _start_workers(
        _flags(out, td, f"--inception_checkpoint_file={out}/inception_v3.ckpt", "--number_of_steps=1000", every_step),
        lambda i: {"TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})},
        tmp_path / "stage1")
    try:
        deadline = time.monotonic() + 300
        while "global step 2:" not in logs[0].read_text() and procs[0].poll() is None:
            assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
            time.sleep(0.2)
        procs[1].kill()
    finally:
        codes = _wait(procs)
    log0, log1 = logs[0].read_text(), logs[1].read_text()
    assert codes[0] == 1 and "train.py: error: lost another worker" in log0, log0[-3000:]
    assert "global batch 4 on 2 replica(s), multi_worker" in log0
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(log0)]  # the chief reports progress
    assert steps[:2] == [1, 2] and steps == list(range(1, len(steps) + 1))
    assert not STEP_LINE.search(log1)  # the other worker does not
    assert len(_worker_dirs(tmp_path / "stage1" / "tmp1")) == 1  # its own checkpoints: killed, so not cleaned up
    last = max(steps)
    assert _global_steps(td) == {n: n for n in range(max(1, last - 4), last + 1)}  # no step in flight saved
    assert not [f for f in os.listdir(td) if f.startswith(".tmp-")]

    # One device resumes the two workers' series.
    caplog.set_level(logging.INFO)
    assert train.main(_flags(out, td, f"--number_of_steps={last + 1}", every_step)) == 0
    assert f"resumed from {td}/model.ckpt-{last} at global step {last}" in caplog.text
    assert [int(m.group(1)) for m in STEP_LINE.finditer(caplog.text)] == [last + 1]

    # Stage 2 on two workers described by the Indexed Job's variables (the operator's contract), resuming the
    # one-device checkpoint: worker 1 has no checkpoint of its own and takes the chief's values.
    hosts = ",".join(f"localhost:{p}" for p in _free_ports(2))
    procs, logs = _start_workers(_flags(out, td, "--train_inception=True", f"--number_of_steps={last + 3}",
                                        every_step),
                                 lambda i: {"IM2TXT_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": str(i)},
                                 tmp_path / "stage2")
    codes = _wait(procs)
    log0, log1 = logs[0].read_text(), logs[1].read_text()
    assert codes == [0, 0], (log0[-3000:], log1[-3000:])
    assert f"resumed from {td}/model.ckpt-{last + 1} at global step {last + 1}" in log0
    assert f"took the chief's values at global step {last + 1}" in log1
    assert [int(m.group(1)) for m in STEP_LINE.finditer(log0)] == [last + 2, last + 3]
    assert _global_steps(td) == {n: n for n in range(last - 1, last + 4)}  # one consistent model.ckpt-N series
    before, after = (tf.train.load_checkpoint(str(td / f"model.ckpt-{n}")) for n in (last + 1, last + 3))
    name = "InceptionV3/Mixed_7c/Branch_3/Conv2d_0b_1x1/weights"
    assert not np.array_equal(before.get_tensor(name), after.get_tensor(name))  # stage 2 trained InceptionV3
    assert not _worker_dirs(tmp_path / "stage2" / "tmp1")  # removed when the non-chief exited


@pytest.mark.slow
def test_mirrored_train_py_on_logical_cpus_with_the_embedding_cache(synthetic, tmp_path):
    out, _ = synthetic
    td, cache = tmp_path / "train", tmp_path / "cache"
    proc = subprocess.run([sys.executable, TRAIN_PY, *_flags(out, td, "--cpu_devices=3", "--number_of_steps=1",
                                                             f"--inception_checkpoint_file={out}/inception_v3.ckpt")],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 1 and "--batch_size=4 is the global batch and must divide evenly over 3 replicas" in (
        proc.stderr), proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, TRAIN_PY, *_flags(
        out, td, "--cpu_devices=2", "--number_of_steps=2", f"--inception_checkpoint_file={out}/inception_v3.ckpt",
        "--precompute_embeddings", f"--embeddings_cache_dir={cache}")], capture_output=True, text=True, env=_env(),
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "global batch 4 on 2 replica(s), mirrored" in proc.stderr
    assert "precomputed 18 image embeddings" in proc.stderr
    assert [int(m.group(1)) for m in STEP_LINE.finditer(proc.stderr)] == [1, 2]
    assert _global_steps(td) == {2: 2}


@pytest.mark.parametrize("pipelines", [2, 3])  # 2 files: whole files per pipeline, else every n-th record
def test_input_pipelines_partition_the_records(synthetic, pipelines):
    from im2txt_trainer import data

    files = synthetic[1]["splits"]["train"]
    everything = sorted(bytes(r.numpy()) for r in data.raw_dataset(files, shuffle=False))
    parts = [[bytes(r.numpy()) for r in data.raw_dataset(files, shuffle=True, shard=(pipelines, i))]
             for i in range(pipelines)]
    assert all(parts) and sorted(r for part in parts for r in part) == everything  # each in exactly one


def test_distribution_flags_that_cannot_work_are_named(tmp_path, monkeypatch, capsys):
    two = json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}})
    argv = ["--input_file_pattern=x", f"--train_dir={tmp_path}"]
    monkeypatch.setenv("TF_CONFIG", two)
    assert train.main([*argv, "--distribution=mirrored"]) == 1
    assert "TF_CONFIG names 2 workers; --distribution=mirrored would train them independently" in (
        capsys.readouterr().err)
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("IM2TXT_WORKER_HOSTS", "localhost:1,localhost:2")
    assert train.main(argv) == 1
    assert "IM2TXT_WORKER_HOSTS names 2 workers but JOB_COMPLETION_INDEX is unset" in capsys.readouterr().err
    monkeypatch.delenv("IM2TXT_WORKER_HOSTS")
    assert train.main([*argv, "--distribution=multi_worker"]) == 1
    assert "--distribution=multi_worker needs TF_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("IM2TXT_DISTRIBUTION", "mirored")
    assert train.main(argv) == 1
    assert "--distribution must be one of auto, off, mirrored, multi_worker, got 'mirored'" in capsys.readouterr().err
