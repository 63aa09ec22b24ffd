"""train.py: the UAI Train command line over the TF2 Show and Tell port (reference im2txt/train.py).

    /data/train.py --input_file_pattern=/data/data/train-?????-of-00256 \
        --inception_checkpoint_file=/data/data/inception_v3.ckpt --train_dir=/data/output/ --number_of_steps=1000000
    /data/train.py --input_file_pattern=... --train_dir=/data/output/ --number_of_steps=3000000 --train_inception=True

Flags: flags.py; the build / restore / loop driver: driver.py. A failure is one `train.py: error:` line and the
termination message `trainer: <reason>`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import cli
from .flags import TrainError, build_parser, check_args

__all__ = ["build_parser", "main", "run"]


def run(a: argparse.Namespace) -> int:
    check_args(a)
    from . import driver  # TensorFlow: only once the flags are known to be good

    stop = driver.Stop()
    # SIGTERM (the kubelet stopping the pod) and Ctrl-C end the current step, save, and exit 128+signal: the
    # target was not reached, so the Job must not count the pod as succeeded (its retry resumes from the save).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return driver.train(a, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    return cli.run("train.py", lambda: run(args), (TrainError,))


if __name__ == "__main__":
    sys.exit(main())
