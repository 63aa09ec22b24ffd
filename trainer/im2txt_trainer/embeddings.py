"""Optional stage-1 speed-up (--precompute_embeddings): run the frozen InceptionV3 once per image.

Stage 1 never changes InceptionV3, so its 2048-d pooled output per image can be computed once and reused
every epoch. The price: no per-step distortion (random crop, flip, colour), so images get the evaluation
preprocessing (central crop). Off by default, as the reference trains with distortions. The cache lives
outside train_dir (which is uploaded) and is keyed by the input files and the encoder's weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from . import data, image_processing
from .config import ModelConfig

log = logging.getLogger(__name__)
FEATURES = "features"


def _cache_key(model, files: Sequence[str], cfg: ModelConfig) -> str:
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(f"{cfg.image_height}x{cfg.image_width}/{cfg.resize_height}".encode())
    for layer in model.encoder.layers[:: max(1, len(model.encoder.layers) // 8)]:
        h.update(np.asarray(layer.conv.kernel)[..., :2].tobytes())
    return h.hexdigest()[:16]


def precompute(model, files: Sequence[str], cfg: ModelConfig, cache_dir: str, jit: bool = False,
               batch_size: int = 64) -> str:
    """Write (features, caption_ids) records once; returns the cache file (reused when complete)."""
    path = os.path.join(cache_dir, f"embeddings-{_cache_key(model, files, cfg)}.tfrecord")
    if os.path.isfile(path):
        log.info("reusing precomputed image embeddings %s", path)
        return path
    os.makedirs(cache_dir, exist_ok=True)
    ev = dataclasses.replace(cfg, batch_size=batch_size)

    def prepare(serialized):
        encoded, caption = data.parse_sequence_example(serialized)
        image = image_processing.process_image(encoded, False, ev.image_height, ev.image_width,
                                               ev.resize_height, ev.resize_width)
        return image, caption

    ds = (data.raw_dataset(files, shuffle=False).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
          .padded_batch(batch_size, padded_shapes=([ev.image_height, ev.image_width, 3], [None]),
                        padding_values=(0.0, np.int64(-1))).prefetch(tf.data.AUTOTUNE))
    encode = tf.function(lambda x: model.image_features(x, training=False, train_inception=False),
                         jit_compile=jit)
    # Unique even across hosts sharing cache_dir (workers of one training may all compute it at once).
    tmp = f"{path}.tmp-{socket.gethostname()}-{os.getpid()}"
    n = 0
    with tf.io.TFRecordWriter(tmp) as w:
        for images, captions in ds:
            feats = encode(images).numpy()
            for f, c in zip(feats, captions.numpy(), strict=True):
                ex = tf.train.Example(features=tf.train.Features(feature={
                    FEATURES: tf.train.Feature(float_list=tf.train.FloatList(value=f)),
                    data.CAPTION_IDS: tf.train.Feature(int64_list=tf.train.Int64List(value=c[c >= 0])),
                }))
                w.write(ex.SerializeToString())
                n += 1
    os.replace(tmp, path)
    log.info("precomputed %d image embeddings into %s", n, path)
    return path


def cache_dir_or_default(cache_dir: str | None) -> str:
    return cache_dir or os.environ.get("IM2TXT_EMBEDDINGS_CACHE") or os.path.join(
        tempfile.gettempdir(), "im2txt-embeddings")


def cached_dataset(path: str, dim: int, cfg: ModelConfig, seed: int | None = None,
                   shuffle_buffer: int | None = None, shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Batches of (features [B,dim], input_seqs, target_seqs, mask) from a cache, shuffled and repeated.

    `shard` (count, index): this input pipeline's records, under a strategy.
    """
    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, {
            FEATURES: tf.io.FixedLenFeature([dim], tf.float32),
            data.CAPTION_IDS: tf.io.VarLenFeature(tf.int64)})
        return (ex[FEATURES], *data.caption_to_example(tf.sparse.to_dense(ex[data.CAPTION_IDS])))

    ds = tf.data.TFRecordDataset(path).shard(*shard).repeat()
    ds = ds.shuffle(shuffle_buffer or cfg.shuffle_buffer, seed=seed).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.padded_batch(cfg.batch_size, padded_shapes=([dim], [None], [None], [None]), drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)
