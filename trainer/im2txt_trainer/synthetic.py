"""A tiny dataset in the real record format, for tests and the demo.

    python -m im2txt_trainer.synthetic --out DIR [--images N] [--image-size S]

Writes train-0000K-of-00002, val-00000-of-00001, test-00000-of-00001 (SequenceExamples as build_data writes
them), word_counts.txt, and inception_v3.ckpt: a TF-slim-named InceptionV3 checkpoint (V1 format, like the
real inception_v3_2016_08_28 file, Logits/AuxLogits included) holding random values. Each caption names the
colour and shape drawn in its image ("a red circle"), so captions can only be learned by looking.
"""

from __future__ import annotations

import io
import os
import random
import sys
from collections.abc import Sequence

import numpy as np

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220)}
# Each colour comes with its own shape: a frozen *random* InceptionV3 (all the tests have) separates
# colours linearly at 75x75 but shapes only weakly; the caption still depends on the image alone.
CLASSES = (("red", "circle"), ("green", "triangle"), ("blue", "square"))


def draw(colour: str, shape: str, size: int, rng: random.Random) -> bytes:
    from PIL import Image, ImageDraw

    # A dark background: after the first ReLU only the shape's colour reaches the features.
    bg = tuple(rng.randint(0, 30) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    # Large, roughly centred shapes: a frozen random InceptionV3 at 75x75 still tells them apart.
    r = rng.uniform(0.36, 0.42) * size
    cx, cy = (size / 2 + rng.uniform(-0.06, 0.06) * size for _ in range(2))
    rgb = tuple(int(np.clip(c + rng.randint(-20, 20), 0, 255)) for c in COLOURS[colour])
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=rgb)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def slim_inception_arrays(seed: int = 0, random_stats: bool = False, dirac: bool = False) -> dict[str, np.ndarray]:
    """Random values for every InceptionV3 slim variable, plus Logits/AuxLogits.

    Weights are He-scaled noise; with `dirac` they are smaller noise around an identity centre tap, a stand-in
    for pretrained weights that (unlike pure noise) carries the image's colours to the pooled features.
    """
    from .inception import InceptionV3Base

    rng = np.random.default_rng(seed)
    shapes = {n: tuple(v.shape) for n, v in _shape_model().variables().items()}
    del InceptionV3Base
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name.endswith("/weights"):
            fan_in = float(np.prod(shape[:-1]))
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in) * (0.2 if dirac else 1.0), shape)
            if dirac:  # centre tap copies input channel (o mod in) to output o: colour survives 94 layers
                kh, kw, cin, cout = shape
                w[kh // 2, kw // 2, np.arange(cout) % cin, np.arange(cout)] += 1.0
            out[name] = w.astype(np.float32)
        elif name.endswith("/beta") or name.endswith("/moving_mean"):
            out[name] = (rng.normal(0, 0.1, shape) if random_stats else np.zeros(shape)).astype(np.float32)
        else:
            out[name] = (rng.uniform(0.5, 1.5, shape) if random_stats else np.ones(shape)).astype(np.float32)
    # The real file also holds the classifier heads, which the trainer must ignore.
    out["InceptionV3/Logits/Conv2d_1c_1x1/biases"] = np.zeros([1001], np.float32)
    out["InceptionV3/AuxLogits/Conv2d_2b_1x1/biases"] = np.zeros([1001], np.float32)
    return out


_SHAPE_MODEL = None


def _shape_model():
    global _SHAPE_MODEL
    if _SHAPE_MODEL is None:
        from .inception import InceptionV3Base

        _SHAPE_MODEL = InceptionV3Base(75, 75)
    return _SHAPE_MODEL


def write_slim_checkpoint(path: str, arrays: dict[str, np.ndarray]) -> None:
    """One-file V1 checkpoint (the format of the published inception_v3.ckpt)."""
    import tensorflow as tf

    names = sorted(arrays)
    tmp = path + ".tmp"
    tf.raw_ops.Save(filename=tmp, tensor_names=names, data=[tf.constant(arrays[n]) for n in names])
    os.replace(tmp, path)


def write_dataset(out: str, images: int = 48, image_size: int = 96, seed: int = 0,
                  inception: bool = True, shards: Sequence[tuple[str, int, float]] | None = None) -> dict:
    """Returns {'splits': {name: [files]}, 'captions': {split: [caption strings]}}."""
    import tensorflow as tf

    from . import data, vocabulary

    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    combos = list(CLASSES)
    shards = shards or (("train", 2, 0.75), ("val", 1, 0.125), ("test", 1, 0.125))
    examples = []
    for i in range(images):
        colour, shape = combos[i % len(combos)]
        examples.append((i, draw(colour, shape, image_size, rng), f"a {colour} {shape}"))
    rng.shuffle(examples)
    tokens = {i: vocabulary.tokenize(cap) for i, _, cap in examples}
    word_counts = vocabulary.count_words(tokens.values(), min_word_count=1)
    vocabulary.write_word_counts(os.path.join(out, "word_counts.txt"), word_counts)
    vocab = vocabulary.Vocabulary([w for w, _ in word_counts])
    result: dict = {"splits": {}, "captions": {}}
    start = 0
    for k, (name, num_shards, frac) in enumerate(shards):
        n = images - start if k == len(shards) - 1 else max(num_shards, round(images * frac))
        part, start = examples[start:start + n], start + n
        files = []
        for s in range(num_shards):
            path = os.path.join(out, f"{name}-{s:05d}-of-{num_shards:05d}")
            with tf.io.TFRecordWriter(path) as w:
                for image_id, jpeg, _ in part[s::num_shards]:
                    ex = data.make_sequence_example(image_id, jpeg, tokens[image_id],
                                                    vocab.caption_ids(tokens[image_id]))
                    w.write(ex.SerializeToString())
            files.append(path)
        result["splits"][name] = files
        result["captions"][name] = [cap for _, _, cap in part]
    if inception:
        write_slim_checkpoint(os.path.join(out, "inception_v3.ckpt"), slim_inception_arrays(seed, dirac=True))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import ArgumentParser

    p = ArgumentParser("python -m im2txt_trainer.synthetic", __doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-inception", action="store_true", help="skip inception_v3.ckpt (about 90 MB)")
    a = p.parse_args(argv)
    if a.images < 8:
        p.error("--images must be >= 8 (train, val and test each need some)")
    res = write_dataset(a.out, a.images, a.image_size, a.seed, inception=not a.no_inception)
    for name, files in res["splits"].items():
        print(f"{name}: {len(res['captions'][name])} examples in {len(files)} shard(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
