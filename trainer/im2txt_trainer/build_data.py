"""COCO-style captions + images -> sharded SequenceExample TFRecords and word_counts.txt (build_mscoco_data.py).

    python -m im2txt_trainer.build_data --train_image_dir=train2014 --val_image_dir=val2014 \
        --train_captions_file=captions_train2014.json --val_captions_file=captions_val2014.json \
        --output_dir=out [--train_shards=256 --val_shards=4 --test_shards=8 --num_threads=8]

As the reference: train = COCO train + the first 85% of COCO val, val = the next 5%, test = the last 10%;
one record per (image, caption); the vocabulary counts train captions only, words seen < 4 times dropped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import random
import sys
from collections.abc import Sequence

from . import cli, vocabulary

log = logging.getLogger(__name__)


class BuildError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class ImageMetadata:
    image_id: int
    filename: str
    captions: tuple[tuple[str, ...], ...]  # tokenized, with <S> and </S>


def load_captions(captions_file: str, image_dir: str) -> list[ImageMetadata]:
    try:
        with open(captions_file, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise BuildError(f"cannot read captions file {captions_file!r}: {e}") from e
    try:
        names = {int(im["id"]): im["file_name"] for im in doc["images"]}
        captions: dict[int, list[tuple[str, ...]]] = collections.defaultdict(list)
        for ann in doc["annotations"]:
            captions[int(ann["image_id"])].append(tuple(vocabulary.tokenize(ann["caption"])))
    except (KeyError, TypeError, ValueError) as e:
        raise BuildError(f"{captions_file!r} is not COCO captions JSON (images[].id/file_name, "
                         f"annotations[].image_id/caption): {e!r}") from e
    out = [ImageMetadata(i, os.path.join(image_dir, name), tuple(captions[i])) for i, name in names.items()
           if captions.get(i)]
    log.info("%s: %d images, %d captions", captions_file, len(out), sum(len(m.captions) for m in out))
    return out


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _write_shard(path: str, items: Sequence[tuple[ImageMetadata, tuple[str, ...]]],
                 vocab: vocabulary.Vocabulary) -> tuple[int, int]:
    import tensorflow as tf

    from .data import make_sequence_example

    written = skipped = 0
    tmp = path + ".tmp"
    with tf.io.TFRecordWriter(tmp) as w:
        for meta, caption in items:
            with open(meta.filename, "rb") as f:
                encoded = f.read()
            if not _is_jpeg(encoded):
                log.warning("skipping %s: not JPEG data", meta.filename)
                skipped += 1
                continue
            ex = make_sequence_example(meta.image_id, encoded, caption, vocab.caption_ids(caption))
            w.write(ex.SerializeToString())
            written += 1
    os.replace(tmp, path)
    return written, skipped


def process_dataset(name: str, images: Sequence[ImageMetadata], vocab: vocabulary.Vocabulary, num_shards: int,
                    output_dir: str, num_threads: int, seed: int = 12345, progress: bool = True) -> list[str]:
    """One record per caption, shuffled, spread over `num_shards` files written in parallel."""
    from tqdm import tqdm

    items = [(m, c) for m in images for c in m.captions]
    random.Random(seed).shuffle(items)  # the reference: random.seed(12345); random.shuffle(...)
    paths = [os.path.join(output_dir, f"{name}-{s:05d}-of-{num_shards:05d}") for s in range(num_shards)]
    bounds = [len(items) * s // num_shards for s in range(num_shards + 1)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_threads) as pool, \
            tqdm(total=num_shards, desc=name, unit="shard", disable=not progress) as bar:
        futures = [pool.submit(_write_shard, p, items[bounds[s]:bounds[s + 1]], vocab) for s, p in enumerate(paths)]
        for fut in concurrent.futures.as_completed(futures):
            fut.result()
            bar.update(1)
    return paths


def build(train_captions_file: str, train_image_dir: str, val_captions_file: str, val_image_dir: str,
          output_dir: str, train_shards: int = 256, val_shards: int = 4, test_shards: int = 8,
          num_threads: int = 8, min_word_count: int = 4, word_counts_output_file: str | None = None,
          progress: bool = True) -> dict[str, list[str]]:
    os.makedirs(output_dir, exist_ok=True)
    train = load_captions(train_captions_file, train_image_dir)
    val = load_captions(val_captions_file, val_image_dir)
    # As the reference: split COCO val in file order; records are shuffled per split below.
    train_cutoff, val_cutoff = int(0.85 * len(val)), int(0.90 * len(val))
    splits = {"train": train + val[:train_cutoff], "val": val[train_cutoff:val_cutoff], "test": val[val_cutoff:]}
    counts = vocabulary.count_words((c for m in splits["train"] for c in m.captions), min_word_count)
    vocabulary.write_word_counts(word_counts_output_file or os.path.join(output_dir, "word_counts.txt"), counts)
    vocab = vocabulary.Vocabulary([w for w, _ in counts]) if counts else None
    if vocab is None:
        raise BuildError(f"no word occurs {min_word_count} times in the training captions")
    shards = {"train": train_shards, "val": val_shards, "test": test_shards}
    return {name: process_dataset(name, splits[name], vocab, shards[name], output_dir, num_threads,
                                  progress=progress) for name in ("train", "val", "test")}


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.ArgumentParser("python -m im2txt_trainer.build_data", __doc__.splitlines()[0])
    p.add_argument("--train_image_dir", required=True)
    p.add_argument("--val_image_dir", required=True)
    p.add_argument("--train_captions_file", required=True)
    p.add_argument("--val_captions_file", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--train_shards", type=int, default=256)
    p.add_argument("--val_shards", type=int, default=4)
    p.add_argument("--test_shards", type=int, default=8)
    p.add_argument("--num_threads", type=int, default=8)
    p.add_argument("--min_word_count", type=int, default=4)
    p.add_argument("--word_counts_output_file", default=None, help="default: OUTPUT_DIR/word_counts.txt")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    def run() -> int:
        build(a.train_captions_file, a.train_image_dir, a.val_captions_file, a.val_image_dir, a.output_dir,
              a.train_shards, a.val_shards, a.test_shards, a.num_threads, a.min_word_count,
              a.word_counts_output_file)
        return 0

    return cli.run("build_data", run, (BuildError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
