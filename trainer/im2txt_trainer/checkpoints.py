"""Name-based `model.ckpt-N` checkpoints with the reference variable names, written atomically.

A save writes the bundle under a temporary prefix, renames its files into place, and only then rewrites the
`checkpoint` index (itself via rename). A pod killed at any point leaves the index naming a complete
checkpoint; loading falls back to older listed checkpoints if the newest cannot be read.

`global_step` is written as int32, the reference's dtype (its Saver refuses any other); older checkpoints of this
trainer hold it as int64 and still restore. Only files in train_dir are ever read as checkpoints or deleted: an
index naming paths elsewhere (the reference's Saver writes absolute paths) is read as naming train_dir's bundles.
Only bundles this run wrote are ever dropped (im2txt_storage.owners: the ledger that says whose a bundle is).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from im2txt_storage import owners

from .model import LEGACY_NAMES

log = logging.getLogger(__name__)
INDEX = "checkpoint"
PREFIX = "model.ckpt"
_STEP = re.compile(r"model\.ckpt-(\d+)$")
GLOBAL_STEP = "global_step"
_INT32_MAX = 2**31 - 1


class CheckpointError(RuntimeError):
    pass


def _files(prefix: str) -> list[str]:
    return glob.glob(glob.escape(prefix) + ".*")


def listed_checkpoints(train_dir: str) -> list[str]:
    """Prefixes named by the index, in train_dir, oldest first (the newest is model_checkpoint_path).

    Each entry is taken by its file name within train_dir: a bundle elsewhere is never this run's checkpoint.
    """
    path = os.path.join(train_dir, INDEX)
    if not os.path.isfile(path):
        return []
    entries: list[str] = []
    latest = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"\s*$', line)
            if not m:
                continue
            p = os.path.join(train_dir, os.path.basename(m.group(2)))
            if m.group(1) == "model_checkpoint_path":
                latest = p
            elif p not in entries:
                entries.append(p)
    if latest is not None and latest not in entries:
        entries.append(latest)
    if latest is not None:  # the newest last
        entries.remove(latest)
        entries.append(latest)
    return entries


def _complete(prefix: str) -> bool:
    return os.path.isfile(prefix + ".index") and bool(glob.glob(glob.escape(prefix) + ".data-*"))


def step_of(prefix: str) -> int:
    m = _STEP.search(os.path.basename(prefix))
    return int(m.group(1)) if m else -1


def complete_on_disk(train_dir: str) -> list[str]:
    """Complete model.ckpt-N bundles in train_dir, oldest first."""
    found = [f[: -len(".index")] for f in glob.glob(os.path.join(glob.escape(train_dir), PREFIX + "-*.index"))]
    return sorted((p for p in found if step_of(p) >= 0 and _complete(p)), key=step_of)


def candidates(train_dir: str) -> list[str]:
    """Checkpoints to try, newest first: the index's list, else complete model.ckpt-N bundles by step."""
    listed = [p for p in reversed(listed_checkpoints(train_dir)) if _complete(p)]
    return listed or list(reversed(complete_on_disk(train_dir)))


def _write_index(train_dir: str, kept: list[str]) -> None:
    rel = [os.path.relpath(p, train_dir) for p in kept]
    text = f'model_checkpoint_path: "{rel[-1]}"\n' + "".join(f'all_model_checkpoint_paths: "{r}"\n' for r in rel)
    tmp = os.path.join(train_dir, f".{INDEX}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(train_dir, INDEX))


def _saved_value(name: str, var: tf.Variable) -> tf.Tensor:
    value = tf.convert_to_tensor(var)
    if name == GLOBAL_STEP and value.dtype != tf.int32:
        if int(value) <= _INT32_MAX:
            return tf.cast(value, tf.int32)
        log.warning("global_step %d does not fit the reference's int32; saved as %s", int(value), value.dtype.name)
    return value


def _inside(train_dir: str, path: str) -> bool:
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(train_dir)


def save(train_dir: str, variables: Mapping[str, tf.Variable], step: int, max_to_keep: int = 5) -> str:
    """Write model.ckpt-<step>, point the index at it, keep the newest `max_to_keep`."""
    final = os.path.join(train_dir, f"{PREFIX}-{step}")
    tmp = os.path.join(train_dir, f".tmp-{PREFIX}-{step}-{os.getpid()}")
    run = owners.run_id()
    owners.record(train_dir, os.path.basename(final), run)  # before its files exist: never an unrecorded bundle
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=tmp, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[_saved_value(n, variables[n]) for n in names])
    # The data file first, the .index last: a bundle is only complete once its .index exists.
    suffixes = sorted((f[len(tmp):] for f in _files(tmp)), key=lambda s: s == ".index")
    for suffix in suffixes:
        with open(tmp + suffix, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp + suffix, final + suffix)
    # Only this run's bundles count, complete on disk or listed (also those an index from another machine no longer
    # names): another run's (a user's UAI checkpoints, a deleted training resumed from) are never dropped.
    previous = {p for p in listed_checkpoints(train_dir) if _complete(p)} | set(complete_on_disk(train_dir))
    previous = set(owners.own(owners.read(train_dir), previous, run))
    previous.discard(final)
    kept = [*sorted(previous, key=step_of), final]
    dropped, kept = kept[:-max_to_keep], kept[-max_to_keep:]
    _write_index(train_dir, kept)
    for p in dropped:
        for f in _files(p):
            if _inside(train_dir, f):  # never a file elsewhere, whatever the index said
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f)
    return final


def remove_partial(train_dir: str) -> None:
    """Temporary files left by a save that was killed."""
    for f in glob.glob(os.path.join(glob.escape(train_dir), f".tmp-{PREFIX}-*")):
        with contextlib.suppress(OSError):
            os.remove(f)


def restore(prefix: str, variables: Mapping[str, tf.Variable]) -> None:
    """Assign every variable from a reference-named checkpoint (accepts the legacy LSTM names)."""
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    missing = []
    for name, var in variables.items():
        key = name if name in shapes else LEGACY_NAMES.get(name)
        if key is None or key not in shapes:
            missing.append(name)
            continue
        value = np.asarray(reader.get_tensor(key))
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(f"checkpoint {prefix}: {name} has shape {value.shape}, the model expects "
                                  f"{tuple(var.shape)} (is --vocab_size the same as when it was written?)")
        var.assign(value.astype(tf.as_dtype(var.dtype).as_numpy_dtype))
    if missing:
        raise CheckpointError(f"checkpoint {prefix} lacks {len(missing)} variables, e.g. {missing[0]!r}")


def restore_latest(train_dir: str, variables: Mapping[str, tf.Variable]) -> str | None:
    """Restore the newest readable checkpoint in train_dir; None when there is none."""
    tried = []
    for prefix in candidates(train_dir):
        try:
            restore(prefix, variables)
            return prefix
        except CheckpointError:
            raise
        except Exception as e:  # OpError, IndexError on a truncated data file, ...
            log.warning("checkpoint %s is unreadable (%s); trying an older one", prefix, e)
            tried.append(prefix)
    if tried:
        raise CheckpointError(f"no readable checkpoint in {train_dir} (tried {', '.join(tried)})")
    return None


class Saver:
    """Interval-based saving for the training loop."""

    def __init__(self, train_dir: str, variables: Mapping[str, tf.Variable], interval_secs: float,
                 max_to_keep: int = 5) -> None:
        self.train_dir, self.variables = train_dir, variables
        self.interval_secs, self.max_to_keep = interval_secs, max_to_keep
        self.last_time = time.monotonic()
        self.last_step: int | None = None

    def due(self) -> bool:
        return time.monotonic() - self.last_time >= self.interval_secs

    def save(self, step: int) -> str | None:
        if step == self.last_step:
            return None
        path = save(self.train_dir, self.variables, step, self.max_to_keep)
        self.last_time, self.last_step = time.monotonic(), step
        log.info("saved checkpoint %s", path)
        return path
