"""Captions for image files from a checkpoint (reference run_inference.py), by the one beam search (beam_search.py).

    python -m im2txt_trainer.inference --checkpoint_path=TRAIN_DIR_OR_model.ckpt-N \
        --vocab_file=word_counts.txt --input_files=img1.jpg,dir/*.jpg [--beam_size=3]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import math
import os
import sys
from collections.abc import Sequence

import numpy as np

from . import cli
from .beam_search import SearchError, check_search
from .vocabulary import Vocabulary, VocabularyError


class InferenceError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Caption:
    """One caption found by the search: word ids (<S> first, </S> last if it completed) and its log-probability."""

    sentence: list[int]
    logprob: float


def resolve_checkpoint(path: str) -> str:
    """A train_dir (its newest checkpoint) or a model.ckpt-N prefix."""
    from . import checkpoints

    if os.path.isdir(path):
        found = checkpoints.candidates(path)
        if not found:
            raise InferenceError(f"--checkpoint_path: no model.ckpt-N checkpoint in {path!r}")
        return found[0]
    if not os.path.isfile(path + ".index"):
        raise InferenceError(f"--checkpoint_path: {path!r} is neither a train_dir nor a checkpoint prefix")
    return path


def load_model(checkpoint_path: str, image_size: int = 299):
    """A ShowAndTell sized from the checkpoint's own shapes, with its values restored."""
    import tensorflow as tf

    from . import checkpoints
    from .config import ModelConfig
    from .model import ShowAndTell

    prefix = resolve_checkpoint(checkpoint_path)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    try:
        vocab_size, embedding = shapes["seq_embedding/map"]
        units = shapes["logits/weights"][0]
    except KeyError as e:
        raise InferenceError(f"checkpoint {prefix} is not an im2txt checkpoint (no {e.args[0]})") from e
    cfg = ModelConfig.for_image_size(image_size, vocab_size=vocab_size, embedding_size=embedding,
                                     num_lstm_units=units, batch_size=1)
    model = ShowAndTell(cfg)
    checkpoints.restore(prefix, model.named_variables())
    return model


class CaptionGenerator:
    """The beam search (beam_search.py, the SavedModel's own) over a model's initial state and step functions."""

    def __init__(self, model, vocab, beam_size: int = 3, max_caption_length: int = 20) -> None:
        import tensorflow as tf

        from .beam_search import beam_search

        check_search(beam_size, max_caption_length)
        self.model, self.vocab = model, vocab
        self.beam_size, self.max_caption_length = beam_size, max_caption_length
        self._init = tf.function(model.inference_initial_state, reduce_retracing=True)
        self._search = tf.function(lambda states: beam_search(model.inference_step, states, vocab.start_id,
                                                              vocab.end_id, beam_size, max_caption_length),
                                   reduce_retracing=True)

    def initial_states(self, images: np.ndarray) -> np.ndarray:
        return self._init(images).numpy()

    def beam_search(self, states: np.ndarray) -> list[list[Caption]]:
        """Per initial state [2U] of `states` [B, 2U], its captions, best first."""
        out = {k: v.numpy() for k, v in self._search(states).items()}
        return [[Caption(out["ids"][i, j, :out["lengths"][i, j]].tolist(), float(out["log_probs"][i, j]))
                 for j in range(n)] for i, n in enumerate(out["num_captions"])]


def load_image(path: str, cfg, encoded: bytes | None = None) -> np.ndarray:
    import tensorflow as tf

    from .image_processing import process_image

    if encoded is None:
        with open(path, "rb") as f:
            encoded = f.read()
    image = process_image(tf.constant(encoded), False, cfg.image_height, cfg.image_width,
                          cfg.resize_height, cfg.resize_width)
    return image.numpy()


def caption_images(model, vocab, images: Sequence[np.ndarray], beam_size: int = 3,
                   max_caption_length: int = 20, batch: int = 16) -> list[list[Caption]]:
    gen = CaptionGenerator(model, vocab, beam_size, max_caption_length)
    out: list[list[Caption]] = []
    for k in range(0, len(images), batch):
        out.extend(gen.beam_search(gen.initial_states(np.stack(images[k:k + batch]))))
    return out


def add_checkpoint_flags(p: argparse.ArgumentParser, max_caption_length: bool = True,
                         checkpoint_path: bool = True) -> None:
    """The flags of a command that captions with a checkpoint: which one, the search, the image size."""
    if checkpoint_path:
        p.add_argument("--checkpoint_path", required=True, help="train_dir (its newest checkpoint) or model.ckpt-N")
    p.add_argument("--beam_size", type=int, default=3)
    if max_caption_length:
        p.add_argument("--max_caption_length", type=int, default=20)
    p.add_argument("--image_size", type=int, default=299, help="the size the model was trained at")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.ArgumentParser("python -m im2txt_trainer.inference", "Caption images.")
    add_checkpoint_flags(p)
    p.add_argument("--vocab_file", required=True, help="word_counts.txt")
    p.add_argument("--input_files", required=True, help="comma-separated image files or globs (JPEG)")
    a = p.parse_args(argv)
    return cli.run("inference", lambda: _caption(a), (InferenceError, VocabularyError, SearchError))


def _caption(a: argparse.Namespace) -> int:
    check_search(a.beam_size, a.max_caption_length)
    vocab = Vocabulary.load(a.vocab_file)
    files = [f for pat in a.input_files.split(",") if pat for f in sorted(glob.glob(pat))]
    if not files:
        raise InferenceError(f"--input_files: no files match {a.input_files!r}")
    model = load_model(a.checkpoint_path, a.image_size)
    captions = caption_images(model, vocab, [load_image(f, model.cfg) for f in files], a.beam_size,
                              a.max_caption_length)
    for f, caps in zip(files, captions, strict=True):
        print(f"Captions for image {os.path.basename(f)}:")
        for i, c in enumerate(caps):
            print(f"  {i}) {vocab.sentence(c.sentence)} (p={math.exp(c.logprob):f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
