"""A checkpoint as a TensorFlow SavedModel for TF Serving / KServe, with the reference beam search in the graph.

    python -m im2txt_trainer.export --checkpoint_path=TRAIN_DIR_OR_model.ckpt-N --vocab_file=word_counts.txt \
        --export_dir=DIR [--beam_size=3] [--max_caption_length=20] [--image_size=299]

Writes DIR/<global_step>/ (TF Serving's versioned layout) and prints that path. Signatures (docs/export.md):
  serving_default  image_feed string [N] (JPEG bytes) -> caption [N], log_prob [N], captions [N, beam],
                   log_probs [N, beam] (float64), num_captions [N] (int32)
  initial_state    image_feed string [N] -> initial_state float32 [N, 2U]   (reference lstm/initial_state)
  inference_step   input_feed int64 [N], state_feed float32 [N, 2U] -> softmax [N, V], state [N, 2U]
The vocabulary travels as a constant of serving_default and as the asset word_counts.txt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from .checkpoints import CheckpointError
from .image_processing import process_image
from .inference import InferenceError, load_model, resolve_checkpoint
from .model import ShowAndTell
from .vocabulary import UNK_WORD, Vocabulary, VocabularyError

# inference.py skips words below this probability (the reference's caption_generator does the same).
MIN_PROBABILITY = 1e-12


class ExportError(Exception):
    pass


def _check_search(beam_size: int, max_caption_length: int) -> None:
    if beam_size < 1 or max_caption_length < 2:
        raise ExportError("--beam_size must be >= 1 and --max_caption_length >= 2")


class CaptionModule(tf.Module):
    """What the SavedModel holds: the model's variables, the vocabulary and the three signatures."""

    def __init__(self, model: ShowAndTell, vocab: Vocabulary, beam_size: int = 3, max_caption_length: int = 20,
                 vocab_file: str | None = None) -> None:
        super().__init__(name="im2txt")
        _check_search(beam_size, max_caption_length)
        cfg = model.cfg
        if beam_size > cfg.vocab_size:
            raise ExportError(f"--beam_size {beam_size} exceeds the checkpoint's vocabulary size {cfg.vocab_size}")
        self.model = model
        # The encoder is a plain object, which tf.Module does not track: list InceptionV3's variables (BN
        # statistics included) here so that they are saved.
        self.encoder_variables = list(model.encoder.model.variables)
        if vocab_file is not None:
            self.vocabulary = tf.saved_model.Asset(vocab_file)
        # Ids past the file's words read as <UNK>, as Vocabulary.id_to_word does.
        self._words = tuple(vocab.words[: cfg.vocab_size]) + (UNK_WORD,) * max(0, cfg.vocab_size - len(vocab.words))
        self.start_id, self.end_id = vocab.start_id, vocab.end_id
        self.beam_size, self.max_caption_length = beam_size, max_caption_length

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """The three signatures, traced once; serving_default calls initial_state's graph (one InceptionV3)."""
        images = tf.TensorSpec([None], tf.string, name="image_feed")
        state = tf.TensorSpec([None, 2 * self.model.cfg.num_lstm_units], tf.float32, name="state_feed")
        initial_state = tf.function(self.initial_state, input_signature=[images])
        step = tf.function(self.inference_step, input_signature=[tf.TensorSpec([None], tf.int64, name="input_feed"),
                                                                  state])
        beam_search = tf.function(self.beam_search)

        def caption(image_feed: tf.Tensor) -> dict[str, tf.Tensor]:
            out = beam_search(initial_state(image_feed)["initial_state"])
            return {"caption": out["captions"][:, 0], "log_prob": out["log_probs"][:, 0], **out}

        return {"serving_default": tf.function(caption, input_signature=[images]).get_concrete_function(),
                "initial_state": initial_state.get_concrete_function(),
                "inference_step": step.get_concrete_function()}

    # -- what the signatures compute ------------------------------------------------------------------------
    def images(self, image_feed: tf.Tensor) -> tf.Tensor:
        """JPEG bytes [N] -> [N, H, W, 3] as inference.load_image preprocesses them."""
        c = self.model.cfg
        return tf.map_fn(lambda s: process_image(s, False, c.image_height, c.image_width, c.resize_height,
                                                 c.resize_width),
                         image_feed, fn_output_signature=tf.TensorSpec([c.image_height, c.image_width, 3],
                                                                       tf.float32))

    def initial_state(self, image_feed: tf.Tensor) -> dict[str, tf.Tensor]:
        images = self.images(image_feed)
        # oneDNN's convolution mishandles an empty batch; an empty request gets an empty answer instead.
        state = tf.cond(tf.shape(images)[0] > 0, lambda: self.model.inference_initial_state(images),
                        lambda: tf.zeros([0, 2 * self.model.cfg.num_lstm_units]))
        return {"initial_state": state}

    def inference_step(self, input_feed: tf.Tensor, state_feed: tf.Tensor) -> dict[str, tf.Tensor]:
        softmax, state = self.model.inference_step(input_feed, state_feed)
        return {"softmax": softmax, "state": state}

    # -- beam search -----------------------------------------------------------------------------------------
    def beam_search(self, initial_state: tf.Tensor) -> dict[str, tf.Tensor]:
        """inference.CaptionGenerator.beam_search for a batch of images, in the graph.

        Per image, as the reference: each step extends every partial caption by its top `beam` words (skipping
        p < 1e-12); the best `beam` that do not end in </S> are the next partial captions, and those that end
        join the best `beam` complete ones kept across steps (the reference's TopN). A caption's score is the sum
        of its words' log-probabilities in float64; equal scores keep the later-pushed caption, as TopN does.
        If no caption completes, the final partial ones are returned. Best first; missing ones are "" / -inf.
        """
        k, length = self.beam_size, self.max_caption_length
        kk = k * k
        batch = tf.shape(initial_state)[0]
        width = initial_state.shape[-1]
        neg_inf = tf.constant(-np.inf, tf.float64)
        positions = tf.range(length)

        # Partial captions: [B, K, L] word ids, their log-probabilities (-inf: no caption) and LSTM states.
        seqs = tf.fill([batch, k, length], tf.constant(self.start_id, tf.int64))
        logp = tf.concat([tf.zeros([batch, 1], tf.float64), tf.fill([batch, k - 1], neg_inf)], axis=1)
        states = tf.tile(initial_state[:, None, :], [1, k, 1])
        # Complete captions: ids, lengths, log-probabilities, and push order (TopN's tie-break).
        comp_seqs = tf.zeros([batch, k, length], tf.int64)
        comp_len = tf.zeros([batch, k], tf.int32)
        comp_logp = tf.fill([batch, k], neg_inf)
        comp_order = tf.fill([batch, k], tf.constant(-1, tf.int32))
        # Candidate c = beam * K + rank is pushed c-th in a step; later steps push after earlier ones.
        parent_of = tf.range(kk) // k

        def step(t: tf.Tensor, seqs: tf.Tensor, logp: tf.Tensor, states: tf.Tensor, comp_seqs: tf.Tensor,
                 comp_len: tf.Tensor, comp_logp: tf.Tensor, comp_order: tf.Tensor) -> tuple[tf.Tensor, ...]:
            feed = tf.reshape(tf.gather(seqs, t, axis=2), [-1])
            probs, new_states = self.model.inference_step(feed, tf.reshape(states, [-1, width]))
            top_p, top_w = tf.math.top_k(probs, k)  # ties: the lower id first, as a stable argsort
            top_p = tf.reshape(tf.cast(top_p, tf.float64), [batch, kk])
            top_w = tf.reshape(tf.cast(top_w, tf.int64), [batch, kk])
            parent_logp = tf.gather(logp, parent_of, axis=1)
            valid = (parent_logp > neg_inf) & (top_p >= MIN_PROBABILITY)
            cand_logp = tf.where(valid, parent_logp + tf.math.log(top_p), neg_inf)
            ends = tf.equal(top_w, self.end_id)
            # Every candidate's words: its parent's, then the new word at position t + 1.
            cand_seqs = tf.where(positions == t + 1, top_w[:, :, None], tf.gather(seqs, parent_of, axis=1))

            # Next partial captions: the best K not ending; reversed so that top_k's lower-index-first picks the
            # later-pushed of equal scores.
            open_logp = tf.reverse(tf.where(ends, neg_inf, cand_logp), axis=[1])
            logp, picked = tf.math.top_k(open_logp, k)
            picked = kk - 1 - picked
            seqs = tf.gather(cand_seqs, picked, batch_dims=1)
            new_states = tf.reshape(new_states, [batch, k, width])
            states = tf.gather(new_states, tf.gather(parent_of, picked), batch_dims=1)

            # Complete captions: the best K of those kept and those ending now, later push first among equals.
            all_logp = tf.concat([comp_logp, tf.where(ends, cand_logp, neg_inf)], axis=1)
            all_order = tf.concat([comp_order, t * kk + tf.range(kk)[None, :] + tf.zeros_like(top_w, tf.int32)],
                                  axis=1)
            all_seqs = tf.concat([comp_seqs, cand_seqs], axis=1)
            all_len = tf.concat([comp_len, tf.fill([batch, kk], t + 2)], axis=1)
            by_order = tf.argsort(all_order, axis=1, direction="DESCENDING", stable=True)
            by_score = tf.argsort(tf.gather(all_logp, by_order, batch_dims=1), axis=1, direction="DESCENDING",
                                  stable=True)
            keep = tf.gather(by_order, by_score, batch_dims=1)[:, :k]
            return (t + 1, seqs, logp, states, tf.gather(all_seqs, keep, batch_dims=1),
                    tf.gather(all_len, keep, batch_dims=1), tf.gather(all_logp, keep, batch_dims=1),
                    tf.gather(all_order, keep, batch_dims=1))

        def more(t: tf.Tensor, seqs: tf.Tensor, logp: tf.Tensor, *_: tf.Tensor) -> tf.Tensor:
            # The reference stops when no partial caption is left (here: for any image).
            return (t < length - 1) & tf.reduce_any(logp > neg_inf)

        t, seqs, logp, _, comp_seqs, comp_len, comp_logp, _ = tf.while_loop(
            more, step, (tf.constant(0), seqs, logp, states, comp_seqs, comp_len, comp_logp, comp_order))

        # No complete caption: the partial ones (all t + 1 words long), as the reference.
        partial = tf.reduce_all(comp_logp == neg_inf, axis=1)
        final_seqs = tf.where(partial[:, None, None], seqs, comp_seqs)
        final_len = tf.where(partial[:, None], tf.fill([batch, k], t + 1), comp_len)
        final_logp = tf.where(partial[:, None], logp, comp_logp)
        found = final_logp > neg_inf

        words = tf.gather(tf.constant(self._words), final_seqs)
        shown = ((positions[None, None, :] < final_len[:, :, None]) & (final_seqs != self.start_id)
                 & (final_seqs != self.end_id))
        text = tf.strings.reduce_join(tf.ragged.boolean_mask(tf.reshape(words, [-1, length]),
                                                             tf.reshape(shown, [-1, length])),
                                      axis=-1, separator=" ")
        text = tf.reshape(text, [batch, k])
        return {"captions": tf.where(found, text, ""), "log_probs": final_logp,
                "num_captions": tf.reduce_sum(tf.cast(found, tf.int32), axis=1)}


def export(checkpoint_path: str, vocab_file: str, export_dir: str, beam_size: int = 3, max_caption_length: int = 20,
           image_size: int = 299) -> str:
    """Write export_dir/<global_step>/ and return that path."""
    _check_search(beam_size, max_caption_length)
    vocab = Vocabulary.load(vocab_file)
    prefix = resolve_checkpoint(checkpoint_path)
    try:
        step = int(tf.train.load_checkpoint(prefix).get_tensor("global_step"))
    except Exception as e:  # NotFoundError, DataLossError, ...: name the file, not a stack
        raise ExportError(f"--checkpoint_path: cannot read global_step from {prefix}: {e}") from e
    target = os.path.join(export_dir, str(step))
    if os.path.exists(target):
        raise ExportError(f"--export_dir: {target} exists already (a served version is never overwritten; "
                          "remove it first)")
    model = load_model(prefix, image_size)
    module = CaptionModule(model, vocab, beam_size, max_caption_length, vocab_file)
    os.makedirs(export_dir, exist_ok=True)
    # A server polling export_dir must never load a half-written version: write aside, then rename.
    tmp = os.path.join(export_dir, f".tmp-{step}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m im2txt_trainer.export", allow_abbrev=False,
                                description="Export a checkpoint as a SavedModel (TF Serving / KServe).")
    p.add_argument("--checkpoint_path", required=True, help="train_dir (its newest checkpoint) or model.ckpt-N")
    p.add_argument("--vocab_file", required=True, help="word_counts.txt (travels inside the SavedModel)")
    p.add_argument("--export_dir", required=True, help="the SavedModel goes to <export_dir>/<global_step>/")
    p.add_argument("--beam_size", type=int, default=3)
    p.add_argument("--max_caption_length", type=int, default=20)
    p.add_argument("--image_size", type=int, default=299, help="the size the model was trained at")
    a = p.parse_args(argv)
    try:
        path = export(a.checkpoint_path, a.vocab_file, a.export_dir, a.beam_size, a.max_caption_length,
                      a.image_size)
    except (InferenceError, VocabularyError, CheckpointError, ExportError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
