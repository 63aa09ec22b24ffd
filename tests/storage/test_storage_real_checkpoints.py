"""sync/fetch with the trainer's real checkpoint writer (TensorFlow): upload while saving, prune what the
Saver drops, and a fresh pod restores the latest checkpoint from what was uploaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from storage_helpers import BUCKET

from im2txt_standins.ufile_server import UFileServer
from im2txt_storage import owners
from im2txt_storage.client import UFileClient
from im2txt_storage.paths import UFileURL
from im2txt_storage.sync import Syncer
from im2txt_storage.transfer import download_tree
from im2txt_trainer import checkpoints


@pytest.mark.slow
def test_trainer_checkpoints_round_trip_through_ufile(
    server: UFileServer, client: UFileClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = UFileURL(BUCKET, "coco/output/")
    train_dir = tmp_path / "pod1" / "output"
    train_dir.mkdir(parents=True)
    variables = {"lstm/basic_lstm_cell/bias": tf.Variable(np.zeros(8, np.float32)),
                 "global_step": tf.Variable(0, dtype=tf.int64)}
    # A deleted training's bundle in the same output (this one resumed from it): another run's, never pruned.
    monkeypatch.setenv("IM2TXT_RUN_ID", "uid-of-a-deleted-training")
    checkpoints.save(str(train_dir), variables, 0)
    monkeypatch.setenv("IM2TXT_RUN_ID", "uid-of-this-training")
    syncer = Syncer(client, url, train_dir, parallel=4)
    syncer.seed()
    for step in range(1, 8):
        variables["lstm/basic_lstm_cell/bias"].assign(np.full(8, step, np.float32))
        variables["global_step"].assign(step)
        checkpoints.save(str(train_dir), variables, step, max_to_keep=5)
        res = syncer.run_round()
        # the index after the files of the checkpoint it names (older bundles and plain files may follow it)
        assert res.uploaded.index("checkpoint") > max(
            i for i, r in enumerate(res.uploaded) if r.startswith(f"model.ckpt-{step}."))
    remote = {k.rsplit("/", 1)[1] for k in server.list_keys(BUCKET, "coco/output/")}
    assert remote == {p.name for p in train_dir.iterdir()}  # ckpt-0, 3..7, the index and ledger; 1 and 2 pruned
    assert not any(n.startswith(("model.ckpt-1.", "model.ckpt-2.")) for n in remote)
    assert {"model.ckpt-0.index", owners.LEDGER} <= remote

    fresh = tmp_path / "pod2" / "output"
    download_tree(client, url, fresh, parallel=4)
    restored = {"lstm/basic_lstm_cell/bias": tf.Variable(np.zeros(8, np.float32)),
                "global_step": tf.Variable(0, dtype=tf.int64)}
    prefix = checkpoints.restore_latest(str(fresh), restored)
    assert prefix is not None and prefix.endswith("model.ckpt-7")
    assert int(restored["global_step"].numpy()) == 7
    np.testing.assert_array_equal(restored["lstm/basic_lstm_cell/bias"].numpy(), np.full(8, 7, np.float32))
