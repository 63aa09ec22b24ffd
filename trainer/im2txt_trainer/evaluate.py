"""Perplexity (reference im2txt/evaluate.py) and BLEU-4 (nltk) of a checkpoint on val/test records.

    python -m im2txt_trainer.evaluate --checkpoint_path=TRAIN_DIR --input_file_pattern='val-?????-of-00004' \
        [--vocab_file=word_counts.txt --bleu] [--image_size=299 --batch_size=32 --num_eval_examples=10132]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
from collections.abc import Sequence


def perplexity(model, files: Sequence[str], batch_size: int = 32, max_examples: int | None = None) -> dict:
    """exp(sum(xent * mask) / sum(mask)) over the records, with eval preprocessing and no dropout."""
    import dataclasses

    import tensorflow as tf

    from . import data

    cfg = dataclasses.replace(model.cfg, batch_size=batch_size)

    @tf.function(reduce_retracing=True)
    def losses(images, ins, targets, mask):
        feats = model.image_features(images, training=False, train_inception=False)
        logits = model.logits(model.embed_image(feats), ins, training=False)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        m = tf.cast(mask, tf.float32)
        return tf.reduce_sum(xent * m), tf.reduce_sum(m), tf.shape(images)[0]

    total = weights = 0.0
    examples = 0
    for batch in data.caption_dataset(files, cfg, is_training=False, repeat=False):
        s, w, n = losses(*batch)
        total, weights, examples = total + float(s), weights + float(w), examples + int(n)
        if max_examples and examples >= max_examples:
            break
    if not weights:
        raise ValueError("no examples in the evaluation records")
    return {"perplexity": math.exp(total / weights), "examples": examples, "words": int(weights)}


def bleu4(model, vocab, files: Sequence[str], beam_size: int = 3, max_images: int | None = None) -> dict:
    """Corpus BLEU-4 of the best beam caption per image against all its reference captions."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    from . import data, inference

    refs: dict[int, list[list[str]]] = collections.defaultdict(list)
    jpegs: dict[int, bytes] = {}
    for rec in data.read_records(files):
        refs[rec["image_id"]].append(rec["caption"][1:-1])
        jpegs.setdefault(rec["image_id"], rec["image_data"])
    ids = sorted(jpegs)[:max_images] if max_images else sorted(jpegs)
    images = [inference.load_image("", model.cfg, jpegs[i]) for i in ids]
    captions = inference.caption_images(model, vocab, images, beam_size)
    hyps = [vocab.sentence(c[0].sentence).split() for c in captions]
    score = corpus_bleu([refs[i] for i in ids], hyps, smoothing_function=SmoothingFunction().method1)
    return {"bleu4": score, "images": len(ids)}


def main(argv: Sequence[str] | None = None) -> int:
    from . import cli, data, inference
    from .vocabulary import VocabularyError

    p = cli.ArgumentParser("python -m im2txt_trainer.evaluate", __doc__.splitlines()[0])
    inference.add_checkpoint_flags(p, max_caption_length=False)
    p.add_argument("--input_file_pattern", required=True, help="e.g. val-?????-of-00004")
    p.add_argument("--vocab_file", default="", help="word_counts.txt (needed for --bleu)")
    p.add_argument("--bleu", action="store_true", help="also caption every image (beam search) and score BLEU-4")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_eval_examples", type=int, default=10132)
    a = p.parse_args(argv)
    return cli.run("evaluate", lambda: _evaluate(a),
                   (data.InputError, VocabularyError, inference.InferenceError, ValueError))


def _evaluate(a: argparse.Namespace) -> int:
    from . import data, inference
    from .vocabulary import Vocabulary, VocabularyError

    files = data.match_files(a.input_file_pattern)
    if a.bleu and not a.vocab_file:
        raise VocabularyError("--vocab_file is required with --bleu (word_counts.txt)")
    vocab = Vocabulary.load(a.vocab_file) if a.bleu else None
    model = inference.load_model(a.checkpoint_path, a.image_size)
    result = {"global_step": int(model.global_step.numpy()),
              **perplexity(model, files, a.batch_size, a.num_eval_examples)}
    if a.bleu:
        result.update(bleu4(model, vocab, files, a.beam_size))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
