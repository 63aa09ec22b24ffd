"""One output folder, one training: checkpoints are pruned by step in the output path, so two trainings writing
one folder (or one inside the other) would delete each other's checkpoints.

A ufile:// output is global (any namespace can name a bucket); a pvc:// output is its namespace's claim. Of two
trainings present in the cluster whose outputs overlap, the older one (creationTimestamp, then namespace/name)
keeps the folder; the other waits, with no Job, until that one is deleted. A deleted training's output is free:
a new training resumes from its checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from im2txt_operator.decisions import Problem


def _folder(body: Mapping[str, Any]) -> str | None:
    """Where the training writes, as a folder key that is comparable across trainings; None when unreadable."""
    path = (body.get("spec") or {}).get("outputPath")
    if not isinstance(path, str) or not path:
        return None
    folder = path if path.endswith("/") else path + "/"
    if folder.startswith("pvc://"):  # a claim is its namespace's
        return f"{(body.get('metadata') or {}).get('namespace', '')}:{folder}"
    return folder


def _age(body: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = body.get("metadata") or {}
    return meta.get("creationTimestamp") or "", meta.get("namespace", ""), meta.get("name", "")


def output_in_use(body: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> Problem | None:
    """A Problem when an older training present in the cluster writes to this training's output folder, or to a
    folder inside or around it."""
    mine = _folder(body)
    if mine is None:
        return None
    uid = (body.get("metadata") or {}).get("uid")
    for other in sorted(others, key=_age):
        meta = other.get("metadata") or {}
        theirs = _folder(other)
        if meta.get("uid") == uid or meta.get("deletionTimestamp") or theirs is None or _age(other) >= _age(body):
            continue
        if mine.startswith(theirs) or theirs.startswith(mine):
            how = "the same folder as" if mine == theirs else "inside" if mine.startswith(theirs) else "around"
            return Problem("spec.outputPath", "OutputPathInUse",
                           f"spec.outputPath: {body['spec']['outputPath']} is {how} the output of training "
                           f"{meta.get('namespace')}/{meta.get('name')} ({other['spec']['outputPath']}); two "
                           "trainings in one output folder would prune each other's checkpoints. Use another "
                           "outputPath, or delete that training: this one then starts by itself (and resumes "
                           "from the checkpoints there)")
    return None
