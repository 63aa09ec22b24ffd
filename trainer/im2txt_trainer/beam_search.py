"""The reference beam search (inference_utils/caption_generator.py) for a batch of images, as one TensorFlow graph.

The SavedModel's serving_default runs it (export.py), and so does inference.py: there is one search.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

# Words below this probability are skipped, as the reference's caption_generator does.
MIN_PROBABILITY = 1e-12

# word ids [N], states [N, 2U] -> softmax [N, V], new states [N, 2U]: ShowAndTell.inference_step, or the
# SavedModel's inference_step signature.
Step = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


class SearchError(ValueError):
    """Search settings no search can run with."""


def check_search(beam_size: int, max_caption_length: int) -> None:
    if beam_size < 1 or max_caption_length < 2:
        raise SearchError("--beam_size must be >= 1 and --max_caption_length >= 2")


def beam_search(step: Step, initial_state: tf.Tensor, start_id: int, end_id: int, beam_size: int = 3,
                max_caption_length: int = 20) -> dict[str, tf.Tensor]:
    """Each image's best `beam_size` captions from its initial LSTM state [B, 2U], best first.

    Per image, as the reference: each step extends every partial caption by its top `beam` words (skipping
    p < 1e-12); the best `beam` that do not end in </S> are the next partial captions, and those that end
    join the best `beam` complete ones kept across steps (the reference's TopN). A caption's score is the sum
    of its words' log-probabilities in float64; equal scores keep the later-pushed caption, as TopN does.
    If no caption completes, the final partial ones are returned.

    Returns ids [B, K, L] int64 (<S> first; a caption is its first `lengths` ids), lengths [B, K] int32,
    log_probs [B, K] float64 (-inf: no caption) and num_captions [B] int32.
    """
    k, length = beam_size, max_caption_length
    kk = k * k
    batch = tf.shape(initial_state)[0]
    width = initial_state.shape[-1]
    neg_inf = tf.constant(-np.inf, tf.float64)
    positions = tf.range(length)

    # Partial captions: [B, K, L] word ids, their log-probabilities (-inf: no caption) and LSTM states.
    seqs = tf.fill([batch, k, length], tf.constant(start_id, tf.int64))
    logp = tf.concat([tf.zeros([batch, 1], tf.float64), tf.fill([batch, k - 1], neg_inf)], axis=1)
    states = tf.tile(initial_state[:, None, :], [1, k, 1])
    # Complete captions: ids, lengths, log-probabilities, and push order (TopN's tie-break).
    comp_seqs = tf.zeros([batch, k, length], tf.int64)
    comp_len = tf.zeros([batch, k], tf.int32)
    comp_logp = tf.fill([batch, k], neg_inf)
    comp_order = tf.fill([batch, k], tf.constant(-1, tf.int32))
    # Candidate c = beam * K + rank is pushed c-th in a step; later steps push after earlier ones.
    parent_of = tf.range(kk) // k

    def extend(t: tf.Tensor, seqs: tf.Tensor, logp: tf.Tensor, states: tf.Tensor, comp_seqs: tf.Tensor,
             comp_len: tf.Tensor, comp_logp: tf.Tensor, comp_order: tf.Tensor) -> tuple[tf.Tensor, ...]:
        feed = tf.reshape(tf.gather(seqs, t, axis=2), [-1])
        probs, new_states = step(feed, tf.reshape(states, [-1, width]))
        top_p, top_w = tf.math.top_k(probs, k)  # ties: the lower id first, as a stable argsort
        top_p = tf.reshape(tf.cast(top_p, tf.float64), [batch, kk])
        top_w = tf.reshape(tf.cast(top_w, tf.int64), [batch, kk])
        parent_logp = tf.gather(logp, parent_of, axis=1)
        valid = (parent_logp > neg_inf) & (top_p >= MIN_PROBABILITY)
        cand_logp = tf.where(valid, parent_logp + tf.math.log(top_p), neg_inf)
        ends = tf.equal(top_w, end_id)
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
        more, extend, (tf.constant(0), seqs, logp, states, comp_seqs, comp_len, comp_logp, comp_order))

    # No complete caption: the partial ones (all t + 1 words long), as the reference.
    partial = tf.reduce_all(comp_logp == neg_inf, axis=1)
    final_seqs = tf.where(partial[:, None, None], seqs, comp_seqs)
    final_len = tf.where(partial[:, None], tf.fill([batch, k], t + 1), comp_len)
    final_logp = tf.where(partial[:, None], logp, comp_logp)
    found = final_logp > neg_inf
    return {"ids": final_seqs, "lengths": final_len, "log_probs": final_logp,
            "num_captions": tf.reduce_sum(tf.cast(found, tf.int32), axis=1)}
