"""build_data writes reference-format records that parse back to the same captions and images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from im2txt_trainer import build_data, data, vocabulary


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def coco(tmp_path):
    """A COCO-shaped captions JSON for train and val, with real JPEG files."""
    for split, n in (("train", 4), ("val", 20)):
        d = tmp_path / split
        d.mkdir()
        images, anns = [], []
        for i in range(n):
            image_id = (1000 if split == "val" else 0) + i
            name = f"COCO_{split}_{image_id:012d}.jpg"
            (d / name).write_bytes(_jpeg((i * 10 % 256, 80, 200)))
            images.append({"id": image_id, "file_name": name})
            anns.append({"image_id": image_id, "caption": f"A dog runs on Grass{'.' if i % 2 else ''}"})
            anns.append({"image_id": image_id, "caption": "a cat sleeps"})
        (tmp_path / f"{split}.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return tmp_path


def test_build_data_round_trip(coco, tmp_path):
    out = tmp_path / "out"
    splits = build_data.build(str(coco / "train.json"), str(coco / "train"), str(coco / "val.json"),
                              str(coco / "val"), str(out), train_shards=3, val_shards=1, test_shards=2,
                              num_threads=2, progress=False)
    assert [p.split("/")[-1] for p in splits["train"]] == [f"train-0000{i}-of-00003" for i in range(3)]
    vocab = vocabulary.Vocabulary.load(str(out / "word_counts.txt"))
    lines = (out / "word_counts.txt").read_text().split("\n")
    assert lines[0].split()[0] in ("<S>", "</S>", "a")
    counts = [int(line.split()[1]) for line in lines if line]
    assert counts == sorted(counts, reverse=True) and min(counts) >= 4
    # 4 train + 17 of 20 val images -> train; 1 val; 2 test (reference 85/5/10 split), 2 captions each.
    records = {name: data.read_records(files) for name, files in splits.items()}
    assert [len(records[k]) for k in ("train", "val", "test")] == [2 * 21, 2 * 1, 2 * 2]
    assert {r["image_id"] for r in records["val"]} == {1017}  # COCO val in file order: 85% | 5% | 10%
    assert {r["image_id"] for r in records["test"]} == {1018, 1019}
    for rec in records["train"] + records["test"]:
        cap = rec["caption"]
        assert cap[0] == "<S>" and cap[-1] == "</S>"
        assert cap in (["<S>", "a", "dog", "runs", "on", "grass", "</S>"],
                       ["<S>", "a", "dog", "runs", "on", "grass", ".", "</S>"], ["<S>", "a", "cat", "sleeps", "</S>"])
        assert rec["caption_ids"] == [vocab.word_to_id(w) for w in cap]
        split = "val" if rec["image_id"] >= 1000 else "train"
        original = (coco / split / f"COCO_{split}_{rec['image_id']:012d}.jpg").read_bytes()
        assert rec["image_data"] == original  # the JPEG bytes themselves, not a re-encoding
    # the training pipeline reads the same ids, shifted by one
    _enc, caption = data.parse_sequence_example(next(iter(tf.data.TFRecordDataset(splits["val"]))))
    ins, targets, mask = data.caption_to_example(caption)
    assert list(ins.numpy()) == records["val"][0]["caption_ids"][:-1]
    assert list(targets.numpy()) == records["val"][0]["caption_ids"][1:]
    assert mask.numpy().tolist() == [1] * len(ins)


def test_vocabulary_reference_semantics(tmp_path):
    path = tmp_path / "word_counts.txt"
    path.write_text("<S> 10\n</S> 10\nb'a' 8\ndog 5\n")
    v = vocabulary.Vocabulary.load(str(path))
    assert (v.start_id, v.end_id, v.word_to_id("a"), v.word_to_id("dog")) == (0, 1, 2, 3)
    assert v.word_to_id("zebra") == v.unk_id == 4  # unknown id = line count
    assert v.sentence([0, 2, 3, 1]) == "a dog"
    with pytest.raises(vocabulary.VocabularyError, match="not found"):
        vocabulary.Vocabulary.load(str(tmp_path / "missing.txt"))


def test_pipeline_batches_are_padded_and_preprocessed(synthetic):
    from im2txt_trainer.config import ModelConfig

    _out, info = synthetic
    cfg = ModelConfig.for_image_size(75, batch_size=4)
    images, ins, targets, mask = next(iter(data.caption_dataset(info["splits"]["train"], cfg, is_training=True)))
    assert images.shape == (4, 75, 75, 3) and cfg.resize_height == 87
    assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
    assert ins.shape == targets.shape == mask.shape and ins.shape[0] == 4
    m = mask.numpy()[:, 1:]
    np.testing.assert_array_equal(ins.numpy()[:, 1:] * m, targets.numpy()[:, :-1] * m)


def test_no_files_match_names_the_pattern(tmp_path):
    with pytest.raises(data.InputError, match="no files match"):
        data.match_files(str(tmp_path / "train-?????-of-00256"))
