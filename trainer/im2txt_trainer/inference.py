"""Captions for image files with beam search (reference inference_utils/caption_generator.py, run_inference.py).

    python -m im2txt_trainer.inference --checkpoint_path=TRAIN_DIR_OR_model.ckpt-N \
        --vocab_file=word_counts.txt --input_files=img1.jpg,dir/*.jpg [--beam_size=3]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import heapq
import math
import os
import sys
from collections.abc import Sequence

import numpy as np


class InferenceError(Exception):
    pass


@dataclasses.dataclass(order=True)
class Caption:
    score: float
    sentence: list[int] = dataclasses.field(compare=False)
    state: np.ndarray = dataclasses.field(compare=False, repr=False)
    logprob: float = dataclasses.field(compare=False)


class TopN:
    """The n best items pushed (a min-heap on score)."""

    def __init__(self, n: int) -> None:
        self.n, self.data = n, []  # type: ignore[var-annotated]
        self._count = 0

    def push(self, item: Caption) -> None:
        entry = (item.score, self._count, item)
        self._count += 1
        if len(self.data) < self.n:
            heapq.heappush(self.data, entry)
        else:
            heapq.heappushpop(self.data, entry)

    def __len__(self) -> int:
        return len(self.data)

    def extract(self) -> list[Caption]:
        """Best first; empties the container."""
        out = [e[2] for e in sorted(self.data, key=lambda e: e[0], reverse=True)]
        self.data = []
        return out


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
    """Beam search exactly as the reference: top beam_size words per partial caption, TopN beams."""

    def __init__(self, model, vocab, beam_size: int = 3, max_caption_length: int = 20,
                 length_normalization_factor: float = 0.0) -> None:
        import tensorflow as tf

        self.model, self.vocab = model, vocab
        self.beam_size, self.max_caption_length = beam_size, max_caption_length
        self.length_normalization_factor = length_normalization_factor
        self._init = tf.function(model.inference_initial_state, reduce_retracing=True)
        self._step = tf.function(model.inference_step, reduce_retracing=True)

    def initial_states(self, images: np.ndarray) -> np.ndarray:
        return self._init(images).numpy()

    def beam_search(self, state: np.ndarray) -> list[Caption]:
        initial = Caption(score=0.0, sentence=[self.vocab.start_id], state=state, logprob=0.0)
        partial, complete = TopN(self.beam_size), TopN(self.beam_size)
        partial.push(initial)
        for _ in range(self.max_caption_length - 1):
            beams = partial.extract()
            partial = TopN(self.beam_size)
            feed = np.array([c.sentence[-1] for c in beams], np.int64)
            probs, states = self._step(feed, np.stack([c.state for c in beams]))
            probs, states = probs.numpy(), states.numpy()
            for i, beam in enumerate(beams):
                top = np.argsort(-probs[i], kind="stable")[: self.beam_size]
                for w in top:
                    p = float(probs[i][w])
                    if p < 1e-12:
                        continue
                    sentence = [*beam.sentence, int(w)]
                    logprob = beam.logprob + math.log(p)
                    score = logprob
                    if w == self.vocab.end_id:
                        if self.length_normalization_factor > 0:
                            score /= len(sentence) ** self.length_normalization_factor
                        complete.push(Caption(score, sentence, states[i], logprob))
                    else:
                        partial.push(Caption(score, sentence, states[i], logprob))
            if len(partial) == 0:
                break
        if len(complete) == 0:
            complete = partial
        return complete.extract()


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
        states = gen.initial_states(np.stack(images[k:k + batch]))
        out.extend(gen.beam_search(s) for s in states)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m im2txt_trainer.inference", allow_abbrev=False,
                                description="Caption images.")
    p.add_argument("--checkpoint_path", required=True, help="train_dir or model.ckpt-N prefix")
    p.add_argument("--vocab_file", required=True, help="word_counts.txt")
    p.add_argument("--input_files", required=True, help="comma-separated image files or globs (JPEG)")
    p.add_argument("--beam_size", type=int, default=3)
    p.add_argument("--max_caption_length", type=int, default=20)
    p.add_argument("--image_size", type=int, default=299)
    a = p.parse_args(argv)
    from .vocabulary import Vocabulary, VocabularyError

    try:
        vocab = Vocabulary.load(a.vocab_file)
        files = [f for pat in a.input_files.split(",") if pat for f in sorted(glob.glob(pat))]
        if not files:
            raise InferenceError(f"--input_files: no files match {a.input_files!r}")
        model = load_model(a.checkpoint_path, a.image_size)
        captions = caption_images(model, vocab, [load_image(f, model.cfg) for f in files], a.beam_size,
                                  a.max_caption_length)
    except (InferenceError, VocabularyError) as e:
        print(f"inference: error: {e}", file=sys.stderr)
        return 1
    for f, caps in zip(files, captions, strict=True):
        print(f"Captions for image {os.path.basename(f)}:")
        for i, c in enumerate(caps):
            print(f"  {i}) {vocab.sentence(c.sentence)} (p={math.exp(c.logprob):f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
