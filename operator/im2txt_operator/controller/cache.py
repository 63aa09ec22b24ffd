"""What the operator remembers of each training and its children, rebuilt from the watches after a restart."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from im2txt_operator import children
from im2txt_operator.decisions import Problem
from im2txt_operator.pod_problems import create_problem, pod_problem
from im2txt_operator.pods import LABEL_TRAINING
from im2txt_operator.shared_outputs import OutputFolders
from im2txt_operator.spec import KIND

Key = tuple[str, str]  # (namespace, training)


def _rv(obj: Mapping[str, Any] | None) -> int | None:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


# What the cache keeps of an object: the controller reads metadata (names, labels, our annotations, owners, uid,
# resourceVersion, generation), a training's spec and status, and a Job's suspend and status (job_state). The
# rest is most of an object's bytes and is never read: managedFields, the last-applied annotation, and of a Job its
# pod template, the rest of its spec and the Job controller's pod bookkeeping. Memory per training is the cache's.
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_JOB_SPEC_KEPT = ("suspend",)
_JOB_STATUS_DROPPED = ("uncountedTerminatedPods", "terminating")


# Every object decoded from JSON has its own copy of each key ("lastTransitionTime", "observedGeneration", ...)
# and of short values ("True", "Succeeded", "im2txt.dev/v1alpha1", a reason, a namespace): one shared copy of each
# (interned) halves what a training and its Jobs hold. Longer values (messages, paths) are mostly each object's own.
_SHARED_VALUE_MAX = 24


def _shared(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(k) if type(k) is str else k: _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if type(value) is str and len(value) <= _SHARED_VALUE_MAX:
        return sys.intern(value)
    return value


def slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` as the cache keeps it: a new dict, its strings shared with the other objects' (``obj`` is not
    changed)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if meta.get("annotations"):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in _DROPPED_ANNOTATIONS}
    out = {**obj, "metadata": meta}
    if obj.get("kind") == "Job":
        if isinstance(obj.get("spec"), Mapping):
            out["spec"] = {k: obj["spec"][k] for k in _JOB_SPEC_KEPT if k in obj["spec"]}
        if isinstance(obj.get("status"), Mapping):
            out["status"] = {k: v for k, v in obj["status"].items() if k not in _JOB_STATUS_DROPPED}
    return _shared(out)


def newer(cached: dict[str, Any] | None, incoming: dict[str, Any], *, slimmed: bool = False) -> dict[str, Any]:
    """Keep the fresher of two versions of an object (watch events and our own write responses race), slim
    (``slimmed``: ``incoming`` is already, and is kept as it is: the Jobs index's copy, shared, not copied again).
    The same version is the same object: the cached copy stays (the echo of our own write is not copied again).

    resourceVersions are opaque by contract but are etcd revisions (integers) on every real server; when
    they are not integers, the incoming one wins.
    """
    a, b = _rv(cached), _rv(incoming)
    if cached is not None and a is not None and b is not None and a >= b:
        return cached
    return incoming if slimmed else slim(incoming)


@dataclass
class Entry:
    """What the operator remembers about one training (rebuilt from the watches after a restart)."""

    body: dict[str, Any] | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role (names.ROLES)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retry: asyncio.Task[None] | None = None
    asked: bool = False  # a reconcile is asked for and has not started yet (queue.Queue.ask)
    failures: int = 0
    sample: tuple[int, float] | None = None  # (step, monotonic time) for the ETA without sec/step
    # The API refused this generation's Job (422, or an admission denial): not tried again until the spec changes.
    rejected: tuple[int | None, Problem] | None = None
    # The running stage's pod cannot start (its Job's name, the problem), from the pod's status: a missing Secret.
    pod_problem: tuple[str, Problem] | None = None
    # Whether pod_problem was read from the pods since this operator started (False: nothing is known yet).
    pods_read: bool = False
    # The generation whose TensorBoard Deployment and Service were last written (None: none written).
    tensorboard: int | None = None
    # The same for the evaluation Deployment (act.ABSENT: known to be absent).
    evaluation: int | None = None
    # resourceVersions our own writes produced: their watch events bring nothing new, so they are not
    # reconciled again (half the work in a burst). Anything else, or a restart, reconciles as usual.
    own: set[str] = field(default_factory=set)

    def remember(self, obj: Mapping[str, Any]) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.own.add(rv)
            if len(self.own) > 16:
                self.own.clear()

    def is_own(self, obj: Mapping[str, Any]) -> bool:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv in self.own:
            self.own.discard(rv)
            return True
        return False

    def wrote(self, obj: dict[str, Any]) -> None:
        """Our write of the training answered ``obj``: keep it, and skip its watch event."""
        self.remember(obj)
        self.body = newer(self.body, obj)

    def read_pod_problem(self, job_name: str, pods: list[dict[str, Any]],
                         failed_creates: list[dict[str, Any]] | None = None) -> bool:
        """What keeps the stage's newest pod from starting, from these pods (or, with no pod at all, the Job's
        FailedCreate Events); True when that changed."""
        body = self.body or {}
        secret = (body.get("spec") or {}).get("credentialsSecret")
        namespace = body.get("metadata", {}).get("namespace", "")
        found = pod_problem(pods, secret if isinstance(secret, str) else None, namespace) or (
            None if pods else create_problem(failed_creates or (), job_name))
        self.pods_read = True
        if found == (self.pod_problem[1] if self.pod_problem else None):
            return False
        self.pod_problem = (job_name, found) if found else None
        return True

    def fold(self, indexed: Iterable[dict[str, Any]]) -> None:
        """Fold the index's Jobs (complete after a restart) into the entry's own view (fresher after our writes)."""
        for job in indexed:
            found = job_key(job)
            if found is not None and found[1] not in self.jobs:
                self.jobs[found[1]] = job

    def keep_job(self, role: str, job: dict[str, Any]) -> None:
        """The Job as a watch event brought it (slim: the Jobs index's copy, shared, not copied again), if fresher."""
        self.jobs[role] = newer(self.jobs.get(role), job, slimmed=True)

    def uid(self) -> str | None:
        return (self.body or {}).get("metadata", {}).get("uid")


def job_key(body: Mapping[str, Any]) -> tuple[Key, str] | None:
    """(the training's key, the Job's role) of a Job of ours."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    training, role = labels.get(LABEL_TRAINING), children.role_of(labels)
    if not training or role is None:
        return None
    return (meta.get("namespace", ""), training), role


def owned_by(job: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether the Job's ownerReferences name this training (by uid): a Job of an earlier one is not ours to drive."""
    uid = body["metadata"].get("uid")
    return any(ref.get("uid") == uid and ref.get("kind") == KIND
               for ref in job.get("metadata", {}).get("ownerReferences") or ())


@dataclass
class Cache:
    """Every training seen, by key; the metrics read it at scrape time."""

    entries: dict[Key, Entry] = field(default_factory=dict)
    outputs: OutputFolders = field(default_factory=OutputFolders)  # every training's output folder, indexed

    def saw(self, key: Key, obj: dict[str, Any]) -> Entry:
        """The training as the API just showed it (a watch event or a read): kept if fresher than the cached one,
        in a fresh entry if it was deleted and made again under the same name."""
        entry = self.entry(key)
        if entry.body is not None and entry.body["metadata"].get("uid") != obj["metadata"].get("uid"):
            entry = self.renew(key)
        entry.body = newer(entry.body, obj)
        self.outputs.put(key, entry.body)
        return entry

    def get(self, key: Key) -> Entry | None:
        return self.entries.get(key)

    def entry(self, key: Key) -> Entry:
        return self.entries.setdefault(key, Entry())

    def renew(self, key: Key) -> Entry:
        """A fresh entry under the key (the training was deleted and made again under the same name)."""
        self.entries[key] = entry = Entry()
        self.outputs.drop(key)
        return entry

    def forget(self, key: Key) -> None:
        entry = self.entries.pop(key, None)
        self.outputs.drop(key)
        if entry is not None and entry.retry is not None:
            entry.retry.cancel()

    def items(self) -> list[tuple[Key, Entry]]:
        """A snapshot: the loops that walk it await, and events change the dict meanwhile."""
        return list(self.entries.items())

    def bodies(self) -> Iterator[dict[str, Any]]:
        return (e.body for e in list(self.entries.values()) if e.body)

    def statuses(self) -> list[dict[str, Any]]:
        return [body.get("status") or {} for body in self.bodies()]


