"""`python -m im2txt_storage.output_check`: fail fast, with one line saying why, when the output dir is not writable.

The operator runs it as the first init container of every pod that writes a pvc:// output, as the trainer's own
user under the restricted Pod Security Standard. Kubernetes applies the pod's fsGroup to a claim only on volume
types that support it; on others (hostPath, many local-path and NFS provisioners) the subPath directory the
kubelet creates is root:root 0755 and the trainer cannot save a checkpoint. This check turns that into one
termination message naming the training's field and the fix, and an exit code (3) the Job's podFailurePolicy
fails the Job on at once (no retries spent on a pod that cannot succeed).

Exit codes: 0 writable, 3 not writable, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .termination import write_reason

NOT_WRITABLE = 3  # the exit code the operator's podFailurePolicy rule matches
COMMAND = "output-check"


def _owner(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as e:
        return f"cannot stat it: {e.strerror or e}"
    return f"owned by {st.st_uid}:{st.st_gid}, mode {st.st_mode & 0o7777:04o}"


def problem(directory: Path, field: str, url: str) -> str | None:
    """Why ``directory`` is not writable by this process (a file is created and removed there), or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".im2txt-write-check-"):
            pass
    except OSError as e:
        return (f"{field} {url!r} is not writable by uid {os.getuid()} gid {os.getgid()} "
                f"({directory} is {_owner(directory)}: {e.strerror or e}); this volume type does not apply the "
                f"pod's fsGroup: make that directory of the claim writable by them (chown {os.getuid()}:{os.getgid()} "
                f"on the volume), then delete the failed Job to retry")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m im2txt_storage.output_check", allow_abbrev=False,
                                     description="exit 3 with a termination message when --dir is not writable")
    parser.add_argument("--dir", type=Path, required=True, help="the mounted output folder (/data/output)")
    parser.add_argument("--field", default="spec.outputPath", help="the training's field behind it")
    parser.add_argument("--url", required=True, help="the training's output path, as the user wrote it")
    args = parser.parse_args(argv)
    reason = problem(args.dir, args.field, args.url)
    if reason is None:
        return 0
    print(f"{COMMAND}: {reason}", file=sys.stderr)
    write_reason(COMMAND, reason)
    return NOT_WRITABLE


if __name__ == "__main__":
    sys.exit(main())
