"""What every trainer command shares: a parser of full flag names only, and one way to fail (one line, exit 1)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from . import termination


class ArgumentParser(argparse.ArgumentParser):
    """allow_abbrev=False: argparse would take `--train_d=/elsewhere` for --train_dir, and the operator reserves the
    reference flags (the Job sets them; extraArgs must not reach them under a shorter name). A bad command line
    (exit 2) is a termination reason too."""

    def __init__(self, prog: str, description: str | None = None) -> None:
        super().__init__(prog=prog, description=description, allow_abbrev=False)

    def error(self, message: str) -> NoReturn:
        termination.write(message)
        super().error(message)


def fail(prog: str, reason: str) -> int:
    """`<prog>: error: <reason>` on stderr, `trainer: <reason>` as the termination message; exit status 1."""
    print(f"{prog}: error: {reason}", file=sys.stderr)
    termination.write(reason)
    return 1


def run(prog: str, command: Callable[[], int], expected: tuple[type[Exception], ...]) -> int:
    """command()'s exit status; an `expected` error (the user's input) fails in one line. Any other exception
    leaves its first line as the termination message and propagates (its traceback is the log's)."""
    try:
        status = command()
    except expected as e:
        return fail(prog, str(e))
    except Exception as e:
        first = str(e).strip().splitlines()
        termination.write(f"{prog}: {type(e).__name__}: {first[0] if first else ''}")
        raise
    return status
