"""A checkpoint as a TensorFlow SavedModel for TF Serving / KServe, with the reference beam search in the graph.

    python -m im2txt_trainer.export --checkpoint_path=TRAIN_DIR_OR_model.ckpt-N --vocab_file=word_counts.txt \
        --export_dir=DIR [--beam_size=3] [--max_caption_length=20] [--image_size=299] \
        [--eval_file_pattern='val-?????-of-00004' --num_eval_examples=10132]

Writes DIR/<global_step>/ (TF Serving's versioned layout) and prints that path. With --eval_file_pattern, the
version also holds evaluation.json: the exported checkpoint's validation perplexity (evaluate.perplexity, as the
evaluation beside training computes it), or the reason there is none (an evaluation never fails the export).
Signatures (docs/export.md):
  serving_default  image_feed string [N] (JPEG bytes) -> caption [N], log_prob [N], captions [N, beam],
                   log_probs [N, beam] (float64), num_captions [N] (int32)
  initial_state    image_feed string [N] -> initial_state float32 [N, 2U]   (reference lstm/initial_state)
  inference_step   input_feed int64 [N], state_feed float32 [N, 2U] -> softmax [N, V], state [N, 2U]
The vocabulary travels as a constant of serving_default and as the asset word_counts.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from . import cli
from .beam_search import SearchError, beam_search, check_search
from .checkpoints import CheckpointError
from .image_processing import process_image
from .inference import InferenceError, add_checkpoint_flags, load_model, resolve_checkpoint
from .model import ShowAndTell
from .vocabulary import UNK_WORD, Vocabulary, VocabularyError


class ExportError(Exception):
    pass


class CaptionModule(tf.Module):
    """What the SavedModel holds: the model's variables, the vocabulary and the three signatures."""

    def __init__(self, model: ShowAndTell, vocab: Vocabulary, beam_size: int = 3, max_caption_length: int = 20,
                 vocab_file: str | None = None) -> None:
        super().__init__(name="im2txt")
        check_search(beam_size, max_caption_length)
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
        """beam_search.beam_search on the model's step, its captions as text: captions [B, K] ("" where there is
        none), log_probs [B, K] float64 (-inf where there is none), num_captions [B], best first."""
        out = beam_search(self.model.inference_step, initial_state, self.start_id, self.end_id, self.beam_size,
                          self.max_caption_length)
        ids, lengths, length = out["ids"], out["lengths"], self.max_caption_length
        words = tf.gather(tf.constant(self._words), ids)
        shown = ((tf.range(length)[None, None, :] < lengths[:, :, None]) & (ids != self.start_id)
                 & (ids != self.end_id))
        text = tf.strings.reduce_join(tf.ragged.boolean_mask(tf.reshape(words, [-1, length]),
                                                             tf.reshape(shown, [-1, length])),
                                      axis=-1, separator=" ")
        text = tf.reshape(text, [tf.shape(ids)[0], self.beam_size])
        found = out["log_probs"] > -np.inf
        return {"captions": tf.where(found, text, ""), "log_probs": out["log_probs"],
                "num_captions": out["num_captions"]}


EVALUATION_FILE = "evaluation.json"


def evaluation_record(model: ShowAndTell, step: int, pattern: str, num_examples: int) -> dict:
    """The figures of the checkpoint being exported, or why there are none."""
    from . import data, evaluate

    try:
        figures = evaluate.perplexity(model, data.match_files(pattern), max_examples=num_examples)
    except (data.InputError, ValueError, tf.errors.OpError) as e:
        reason = str(e).strip().splitlines()
        return {"global_step": step, "input_file_pattern": pattern, "error": reason[0] if reason else repr(e)}
    return {"global_step": step, "input_file_pattern": pattern, **figures}


def export(checkpoint_path: str, vocab_file: str, export_dir: str, beam_size: int = 3, max_caption_length: int = 20,
           image_size: int = 299, eval_file_pattern: str = "", num_eval_examples: int = 10132) -> str:
    """Write export_dir/<global_step>/ and return that path."""
    check_search(beam_size, max_caption_length)
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
    try:
        os.makedirs(export_dir, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--export_dir {export_dir!r} cannot be created: {e.strerror or e}") from e
    # A server polling export_dir must never load a half-written version: write aside, then rename.
    tmp = os.path.join(export_dir, f".tmp-{step}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        if eval_file_pattern:
            record = evaluation_record(model, step, eval_file_pattern, num_eval_examples)
            with open(os.path.join(tmp, EVALUATION_FILE), "w", encoding="utf-8") as f:
                json.dump(record, f, sort_keys=True)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.ArgumentParser("python -m im2txt_trainer.export",
                           "Export a checkpoint as a SavedModel (TF Serving / KServe).")
    add_checkpoint_flags(p)
    p.add_argument("--vocab_file", required=True, help="word_counts.txt (travels inside the SavedModel)")
    p.add_argument("--export_dir", required=True, help="the SavedModel goes to <export_dir>/<global_step>/")
    p.add_argument("--eval_file_pattern", default="", help="validation records: their perplexity goes beside it")
    p.add_argument("--num_eval_examples", type=int, default=10132)
    a = p.parse_args(argv)

    def run() -> int:
        print(export(a.checkpoint_path, a.vocab_file, a.export_dir, a.beam_size, a.max_caption_length, a.image_size,
                     a.eval_file_pattern, a.num_eval_examples))
        return 0

    return cli.run("export", run, (InferenceError, VocabularyError, CheckpointError, ExportError, SearchError))


if __name__ == "__main__":
    sys.exit(main())
