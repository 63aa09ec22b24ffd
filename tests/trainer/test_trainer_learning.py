"""Real learning: captions that only the image determines are learned, then found by beam search."""

from __future__ import annotations

import collections
import logging

import pytest

from im2txt_trainer import data, inference, synthetic, train, vocabulary


@pytest.mark.slow
def test_learns_image_dependent_captions(tmp_path, caplog):
    out = tmp_path / "data"
    info = synthetic.write_dataset(str(out), images=120, image_size=80, seed=11)
    held_out = data.read_records(info["splits"]["val"] + info["splits"]["test"])
    truth = [" ".join(r["caption"][1:-1]) for r in held_out]
    # Three captions, equally frequent: an image-blind model gets at most a third right.
    assert max(collections.Counter(truth).values()) <= 0.5 * len(truth)

    caplog.set_level(logging.INFO)
    # Stage-1 training with the reference settings (frozen InceptionV3, 512-unit LSTM and embeddings, SGD lr 2.0
    # halved every 8 epochs, clipping 5, dropout) on 75x75 images, so it fits a CPU minute. The epoch size makes
    # the lr halve every 200 steps, as the reference schedule would on a set this small. Measured over 6 seeds,
    # the model reads the image (loss < 0.1) by step 75-125; a 32-unit LSTM needed 100-450+ steps and once in
    # CI never got past the image-blind plateau (loss ~0.27 = ln 3 over 4 words).
    assert train.main([f"--input_file_pattern={out}/train-?????-of-00002", f"--train_dir={tmp_path}/train",
                       f"--inception_checkpoint_file={out}/inception_v3.ckpt", "--number_of_steps=400",
                       "--batch_size=16", "--image_size=75", "--vocab_size=12", "--log_every_n_steps=50",
                       "--seed=1", "--num_examples_per_epoch=400"]) == 0
    assert "global step 400: loss = " in caplog.text

    vocab = vocabulary.Vocabulary.load(str(out / "word_counts.txt"))
    model = inference.load_model(str(tmp_path / "train"), image_size=75)
    images = [inference.load_image("", model.cfg, r["image_data"]) for r in held_out]
    captions = inference.caption_images(model, vocab, images, beam_size=3)
    predicted = [vocab.sentence(c[0].sentence) for c in captions]
    correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
    assert correct >= 0.9 * len(truth), list(zip(predicted, truth, strict=True))
    assert len(set(predicted)) == 3  # different images, different captions
