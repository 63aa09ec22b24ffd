"""One output folder, one training: checkpoints are pruned by step in the output path, so two trainings writing
one folder (or one inside the other) would delete each other's checkpoints.

A ufile:// output is global (any namespace can name a bucket); a pvc:// output is its namespace's claim. Of two
trainings present in the cluster whose outputs overlap, the older one (creationTimestamp, then namespace/name)
keeps the folder; the other waits, with no Job, until that one is deleted. A deleted training's output is free:
a new training resumes from its checkpoints.

OutputFolders indexes every training's folder, so that a check looks at the few trainings whose folders overlap
(a lookup per level of the path, and a range of a sorted list) rather than at all of them: thousands of trainings
would otherwise make each stage's start cost O(N).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
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


class OutputFolders:
    """Each training's output folder (by key), with what output_in_use reads of it: kept as the watch brings it."""

    def __init__(self) -> None:
        self._of: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}  # key -> (folder, the fields read)
        self._keys: dict[str, set[tuple[str, str]]] = {}  # folder -> keys
        self._sorted: list[str] = []  # the folders, sorted: the ones inside a folder follow it

    def put(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        self.drop(key)
        folder = _folder(body)
        if folder is None:
            return
        meta = body.get("metadata") or {}
        self._of[key] = (folder, {"metadata": {k: meta.get(k) for k in (
            "name", "namespace", "uid", "creationTimestamp", "deletionTimestamp")},
            "spec": {"outputPath": body["spec"]["outputPath"]}})
        if folder not in self._keys:
            bisect.insort(self._sorted, folder)
        self._keys.setdefault(folder, set()).add(key)

    def drop(self, key: tuple[str, str]) -> None:
        found = self._of.pop(key, None)
        if found is None:
            return
        keys = self._keys[found[0]]
        keys.discard(key)
        if not keys:
            del self._keys[found[0]]
            del self._sorted[bisect.bisect_left(self._sorted, found[0])]

    def overlapping(self, body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        """The indexed trainings whose folder is ``body``'s, around it or inside it (``body`` itself included)."""
        mine = _folder(body)
        if mine is None:
            return
        around = {mine[:i + 1] for i, c in enumerate(mine) if c == "/"}
        inside = []
        for folder in self._sorted[bisect.bisect_left(self._sorted, mine):]:
            if not folder.startswith(mine):
                break
            inside.append(folder)
        for folder in around | set(inside):
            for key in self._keys.get(folder, ()):
                yield self._of[key][1]
