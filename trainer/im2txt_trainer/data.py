"""tf.data input pipeline over SequenceExample TFRecords (reference ops/inputs.py, without queues)."""

from __future__ import annotations

import glob
from collections.abc import Sequence

import tensorflow as tf

from . import image_processing
from .config import ModelConfig

IMAGE_ID = "image/image_id"
IMAGE_DATA = "image/data"
CAPTION = "image/caption"
CAPTION_IDS = "image/caption_ids"


class InputError(ValueError):
    pass


def match_files(input_file_pattern: str) -> list[str]:
    """Comma-separated globs -> sorted file list; no match is an error naming the pattern."""
    files: list[str] = []
    for pattern in (p.strip() for p in input_file_pattern.split(",")):
        if pattern:
            files.extend(sorted(tf.io.gfile.glob(pattern) if "://" in pattern else glob.glob(pattern)))
    if not files:
        raise InputError(f"--input_file_pattern: no files match {input_file_pattern!r}")
    return files


def parse_sequence_example(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={IMAGE_DATA: tf.io.FixedLenFeature([], dtype=tf.string)},
        sequence_features={CAPTION_IDS: tf.io.FixedLenSequenceFeature([], dtype=tf.int64)},
    )
    return context[IMAGE_DATA], sequence[CAPTION_IDS]


def caption_to_example(caption: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """caption[:-1] -> caption[1:], mask of ones (reference batch_with_dynamic_pad)."""
    n = tf.shape(caption)[0] - 1
    return caption[:n], caption[1:], tf.ones([n], tf.int32)


def raw_dataset(files: Sequence[str], shuffle: bool, seed: int | None = None,
                shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Serialized records; `shard` (count, index) keeps one input pipeline's part: whole files when there are
    at least as many files as pipelines, else every count-th record."""
    count, index = shard
    files = list(files)
    by_record = count > 1 and len(files) < count
    if count > 1 and not by_record:
        files = files[index::count]
    # Sharding by record partitions the data only if every pipeline reads the same order: files in list order,
    # read deterministically (the shuffle buffer after this still gives each pipeline its own order).
    shuffle = shuffle and not by_record
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    # Parallel reads may yield out of order for speed, except when a seed asks for a reproducible run.
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle or seed is not None)
    return ds.shard(count, index) if by_record else ds


def caption_dataset(files: Sequence[str], cfg: ModelConfig, is_training: bool, seed: int | None = None,
                    repeat: bool = True, shuffle_buffer: int | None = None,
                    shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Batches of (images [B,H,W,3], input_seqs, target_seqs, input_mask) of cfg.batch_size, dynamically padded.

    Under a strategy this is one input pipeline's dataset (`shard`), batched per replica.
    """
    ds = raw_dataset(files, shuffle=is_training, seed=seed, shard=shard)
    if repeat:
        ds = ds.repeat()
    if is_training:
        ds = ds.shuffle(shuffle_buffer or cfg.shuffle_buffer, seed=seed)
    ds = ds.map(parse_sequence_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.enumerate()

    def prepare(index: tf.Tensor, item: tuple[tf.Tensor, tf.Tensor]):
        encoded, caption = item
        image = image_processing.process_image(
            encoded, is_training, cfg.image_height, cfg.image_width, cfg.resize_height, cfg.resize_width,
            ordering=index)
        return (image, *caption_to_example(caption))

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not is_training or seed is not None)
    ds = ds.padded_batch(cfg.batch_size, padded_shapes=([cfg.image_height, cfg.image_width, 3], [None], [None],
                                                          [None]), drop_remainder=repeat)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_records(files: Sequence[str]) -> list[dict]:
    """All records as plain dicts (tests and evaluation tools)."""
    out = []
    for serialized in tf.data.TFRecordDataset(list(files)):
        context, sequence = tf.io.parse_single_sequence_example(
            serialized,
            context_features={IMAGE_ID: tf.io.FixedLenFeature([], tf.int64),
                              IMAGE_DATA: tf.io.FixedLenFeature([], tf.string)},
            sequence_features={CAPTION: tf.io.FixedLenSequenceFeature([], tf.string),
                               CAPTION_IDS: tf.io.FixedLenSequenceFeature([], tf.int64)})
        out.append({"image_id": int(context[IMAGE_ID]), "image_data": bytes(context[IMAGE_DATA].numpy()),
                    "caption": [t.decode() for t in sequence[CAPTION].numpy()],
                    "caption_ids": [int(i) for i in sequence[CAPTION_IDS].numpy()]})
    return out


def make_sequence_example(image_id: int, image_data: bytes, caption: Sequence[str],
                          caption_ids: Sequence[int]) -> tf.train.SequenceExample:
    """The reference record: context image/image_id + image/data, feature lists caption + caption_ids."""
    context = tf.train.Features(feature={
        IMAGE_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[image_id])),
        IMAGE_DATA: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_data])),
    })
    feature_lists = tf.train.FeatureLists(feature_list={
        CAPTION: tf.train.FeatureList(feature=[
            tf.train.Feature(bytes_list=tf.train.BytesList(value=[w.encode()])) for w in caption]),
        CAPTION_IDS: tf.train.FeatureList(feature=[
            tf.train.Feature(int64_list=tf.train.Int64List(value=[i])) for i in caption_ids]),
    })
    return tf.train.SequenceExample(context=context, feature_lists=feature_lists)
