"""The reference evaluate.py's loop: watch a train_dir, evaluate each new checkpoint, write summaries to an eval dir.

    python -m im2txt_trainer.eval_loop --checkpoint_dir=/data/output --eval_dir=/data/output/eval \
        --input_file_pattern='/data/data/val-?????-of-00004' [--final_steps=1000000,3000000] \
        [--eval_interval_secs=600 --num_eval_examples=10132 --min_global_step=5000] \
        [--bleu --vocab_file=word_counts.txt --bleu_images=500] [--once]

As the reference: perplexity = exp(sum(xent * mask) / sum(mask)) over `num_eval_examples` validation records with
eval preprocessing, written to `eval_dir` as the scalar `Perplexity` at the checkpoint's global step (TensorBoard
shows it as the run `eval` beside the training's), at most once per `eval_interval_secs`; checkpoints before
`min_global_step` are skipped. Unlike the reference it never evaluates the same checkpoint twice, and a stage's
last checkpoint (`--final_steps`, the stages' `--number_of_steps`) comes first whenever it is on disk, so it is
evaluated even when newer checkpoints of the next stage follow it quickly. Each result is also one log line,
`evaluation: {"global_step": N, "perplexity": P, ...}` (JSON), which the operator reads into the status.
BLEU-4 (optional, beam search on `bleu_images` images) is the scalar `BLEU-4`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Sequence

from . import checkpoints

log = logging.getLogger("im2txt_trainer.eval_loop")
RESULT_PREFIX = "evaluation: "


def pick(available: Collection[int], done: Collection[int], finals: Collection[int], min_step: int) -> int | None:
    """The step to evaluate next: the lowest final step on disk not yet evaluated, else the newest checkpoint if it
    is new and past `min_step`, else none. Pure."""
    pending = sorted(s for s in available if s in finals and s not in done)
    if pending:
        return pending[0]
    newest = max(available, default=None)
    if newest is None or newest in done or newest < min_step:
        return None
    return newest


def on_disk(checkpoint_dir: str) -> dict[int, str]:
    """Global step -> prefix of every complete model.ckpt-N bundle in the directory."""
    return {checkpoints.step_of(p): p for p in checkpoints.complete_on_disk(checkpoint_dir)}


def result_line(result: dict) -> str:
    return RESULT_PREFIX + json.dumps(result, sort_keys=True)


def evaluate_checkpoint(prefix: str, a: argparse.Namespace, files: Sequence[str], vocab) -> dict:
    from . import evaluate, inference

    model = inference.load_model(prefix, a.image_size)
    result = {"global_step": int(model.global_step.numpy()),
              **evaluate.perplexity(model, files, a.batch_size, a.num_eval_examples)}
    if a.bleu:
        result.update(evaluate.bleu4(model, vocab, files, a.beam_size, a.bleu_images))
    return result


def write_summary(writer, result: dict) -> None:
    import tensorflow as tf

    with writer.as_default(step=result["global_step"]):
        tf.summary.scalar("Perplexity", result["perplexity"])  # the reference's tag
        if "bleu4" in result:
            tf.summary.scalar("BLEU-4", result["bleu4"])
    writer.flush()


def run(a: argparse.Namespace, stop: threading.Event) -> int:
    import tensorflow as tf

    from . import data, inference
    from .vocabulary import Vocabulary

    files = data.match_files(a.input_file_pattern)
    vocab = Vocabulary.load(a.vocab_file) if a.bleu else None
    os.makedirs(a.eval_dir, exist_ok=True)
    writer = tf.summary.create_file_writer(a.eval_dir)
    finals = {int(s) for s in a.final_steps.split(",") if s.strip()}
    done: set[int] = set()
    not_before = 0.0  # monotonic time before which no other checkpoint than a stage's last is evaluated
    while not stop.is_set():
        found = on_disk(a.checkpoint_dir)
        step = pick(found, done, finals, a.min_global_step)
        if step is None or (step not in finals and time.monotonic() < not_before):
            if a.once and step is None:
                return 0
            stop.wait(a.poll_secs)  # a stage's last checkpoint is looked for, and taken, during the interval too
            continue
        started = time.monotonic()
        try:
            result = evaluate_checkpoint(found[step], a, files, vocab)
        except (tf.errors.NotFoundError, checkpoints.CheckpointError, inference.InferenceError) as e:
            # The trainer keeps its newest five and may delete this one while we read it; a checkpoint that
            # cannot be read is not tried again (the next one is), so one bad bundle never stops the loop.
            log.warning("evaluation: skipped model.ckpt-%d: %s", step, str(e).splitlines()[0] if str(e) else e)
            done.add(step)
            continue
        result["final"] = step in finals
        write_summary(writer, result)
        print(result_line(result), flush=True)
        done.add(step)
        if a.once:
            return 0
        if step not in finals:  # as the reference: at most one evaluation per interval, from the start of the last
            not_before = started + a.eval_interval_secs
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from . import cli, data, inference
    from .vocabulary import VocabularyError

    p = cli.ArgumentParser("python -m im2txt_trainer.eval_loop", __doc__.splitlines()[0])
    inference.add_checkpoint_flags(p, checkpoint_path=False, max_caption_length=False)
    p.add_argument("--checkpoint_dir", required=True, help="the train_dir the trainer writes")
    p.add_argument("--eval_dir", required=True, help="where the summaries go (the reference: train_dir/../eval)")
    p.add_argument("--input_file_pattern", required=True, help="e.g. val-?????-of-00004")
    p.add_argument("--final_steps", default="", help="comma-separated: each stage's --number_of_steps")
    p.add_argument("--eval_interval_secs", type=float, default=600.0)
    p.add_argument("--poll_secs", type=float, default=30.0, help="how often to look for a new checkpoint")
    p.add_argument("--num_eval_examples", type=int, default=10132)
    p.add_argument("--min_global_step", type=int, default=5000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--bleu", action="store_true", help="also BLEU-4 by beam search (needs --vocab_file)")
    p.add_argument("--bleu_images", type=int, default=500)
    p.add_argument("--vocab_file", default="")
    p.add_argument("--once", action="store_true", help="evaluate at most one checkpoint, then exit")
    a = p.parse_args(argv)
    if a.bleu and not a.vocab_file:
        return cli.fail("eval_loop", "--vocab_file is required with --bleu (word_counts.txt)")
    for flag in ("eval_interval_secs", "poll_secs", "num_eval_examples", "batch_size", "bleu_images"):
        if getattr(a, flag) <= 0:
            return cli.fail("eval_loop", f"--{flag} must be positive, got {getattr(a, flag)}")
    try:
        [int(s) for s in a.final_steps.split(",") if s.strip()]
    except ValueError:
        return cli.fail("eval_loop", f"--final_steps: comma-separated step numbers expected, got {a.final_steps!r}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return cli.run("eval_loop", lambda: run(a, stop),
                   (data.InputError, VocabularyError, inference.InferenceError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
