"""Caption JPEG files with an exported SavedModel (im2txt_trainer.export), printed as inference.py prints them.

    python -m im2txt_trainer.caption --saved_model=EXPORT_DIR[/VERSION] a.jpg b.jpg ...

Needs TensorFlow only (no trainer code, no checkpoint, no vocabulary file): it also runs as a plain script.
EXPORT_DIR picks its highest numeric version, as TF Serving does.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

BATCH = 16  # images per call, as inference.py batches them


class CaptionError(Exception):
    pass


def saved_model_dir(path: str) -> str:
    """`path` itself if it holds a SavedModel, else its highest numeric version folder."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(d) for d in (os.listdir(path) if os.path.isdir(path) else [])
                       if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb"))), reverse=True)
    if not versions:
        raise CaptionError(f"--saved_model: no SavedModel in {path!r} (expected saved_model.pb in it or in a "
                           "numeric version folder under it)")
    return os.path.join(path, str(versions[0]))


def caption_files(saved_model: str, files: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Per file, its (caption, log-probability) pairs, best first."""
    import tensorflow as tf

    folder = saved_model_dir(saved_model)
    encoded = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                encoded.append(fh.read())
        except OSError as e:
            raise CaptionError(f"cannot read {f}: {e.strerror}") from e
        try:  # the server's error would not say which image; decoding here does
            tf.io.decode_jpeg(encoded[-1], channels=3)
        except tf.errors.InvalidArgumentError as e:
            raise CaptionError(f"{f}: not an image the model can decode (JPEG)") from e
    serve = tf.saved_model.load(folder).signatures["serving_default"]
    out: list[list[tuple[str, float]]] = []
    for k in range(0, len(files), BATCH):
        res = serve(image_feed=tf.constant(encoded[k:k + BATCH]))
        for caps, logps, n in zip(res["captions"].numpy(), res["log_probs"].numpy(), res["num_captions"].numpy(),
                                  strict=True):
            out.append([(c.decode("utf-8"), float(lp)) for c, lp in zip(caps[:n], logps[:n], strict=True)])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m im2txt_trainer.caption", allow_abbrev=False,
                                description="Caption JPEG files with an exported SavedModel.")
    p.add_argument("--saved_model", required=True, help="an export folder (highest version) or one version folder")
    p.add_argument("images", nargs="+", help="JPEG files")
    a = p.parse_args(argv)
    try:
        results = caption_files(a.saved_model, a.images)
    except CaptionError as e:
        print(f"caption: error: {e}", file=sys.stderr)
        return 1
    for f, caps in zip(a.images, results, strict=True):
        print(f"Captions for image {os.path.basename(f)}:")
        for i, (text, logprob) in enumerate(caps):
            print(f"  {i}) {text} (p={math.exp(logprob):f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
