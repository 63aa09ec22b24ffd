"""The test oracle for the beam search: the reference's inference_utils/caption_generator.py, written out in Python.

The trainer has one beam search (im2txt_trainer.beam_search, a TensorFlow graph); this is the reference's own
per-image algorithm, step by step, so that the graph can be checked against it.
"""

from __future__ import annotations

import dataclasses
import heapq
import math

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(order=True)
class Caption:
    score: float
    sentence: list[int] = dataclasses.field(compare=False)
    state: np.ndarray = dataclasses.field(compare=False, repr=False)
    logprob: float = dataclasses.field(compare=False)


class TopN:
    """The n best items pushed (a min-heap on score; equal scores: the later push wins, as heapq with a count)."""

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


class CaptionGenerator:
    """caption_generator.CaptionGenerator: top beam_size words per partial caption, TopN beams, p < 1e-12 skipped."""

    def __init__(self, model, vocab, beam_size: int = 3, max_caption_length: int = 20) -> None:
        self.vocab, self.beam_size, self.max_caption_length = vocab, beam_size, max_caption_length
        self._step = tf.function(model.inference_step, reduce_retracing=True)

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
                for w in np.argsort(-probs[i], kind="stable")[: self.beam_size]:
                    p = float(probs[i][w])
                    if p < 1e-12:
                        continue
                    sentence = [*beam.sentence, int(w)]
                    logprob = beam.logprob + math.log(p)
                    done = complete if w == self.vocab.end_id else partial
                    done.push(Caption(logprob, sentence, states[i], logprob))
            if len(partial) == 0:
                break
        if len(complete) == 0:
            complete = partial
        return complete.extract()
