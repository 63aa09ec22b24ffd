"""An in-memory Kube for the controller's unit tests: keeps Jobs, trainings, pods and logs, records every call."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from im2txt_operator.api_errors import ApiException

SPEC = {"dataPath": "ufile://data/coco/", "outputPath": "ufile://out/coco/", "credentialsSecret": "ufile-keys",
        "numberOfSteps": 100, "stage2NumberOfSteps": 300, "gpus": 0}


def training(name: str = "coco", namespace: str = "ml", spec: dict[str, Any] | None = None,
             status: dict[str, Any] | None = None, uid: str = "uid-coco", rv: str = "1") -> dict[str, Any]:
    """A training as the API would serve it."""
    body: dict[str, Any] = {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                            "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1,
                                         "resourceVersion": rv},
                            "spec": dict(SPEC if spec is None else spec)}
    if status is not None:
        body["status"] = status
    return body


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


class FakeKube:
    """The calls the controller makes, answered from dicts. ``refuse``: the 422 message a Job's create answers."""

    def __init__(self, *trainings: dict[str, Any]) -> None:
        self.rv = itertools.count(100)
        self.trainings = {(t["metadata"]["namespace"], t["metadata"]["name"]): copy.deepcopy(t) for t in trainings}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        self.pods: dict[str, list[dict[str, Any]]] = {}  # by Job name
        self.logs: dict[tuple[str, str], str] = {}  # (pod, container) -> text
        self.events: dict[str, list[dict[str, Any]]] = {}  # Job name -> its FailedCreate Events
        self.claims: set[str] = set()
        self.calls: list[tuple[str, ...]] = []
        self.freshness: list[tuple[str, str | None]] = []
        self.refuse: str | None = None
        self.closed = False

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        return copy.deepcopy(obj)

    def writes(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] not in ("read", "get_training", "training_uids", "claim_exists",
                                                       "list_pods", "list_pods_labelled", "read_log",
                                                       "failed_creates", "list_workloads")]

    def _where(self, plural: str, namespace: str, name: str) -> tuple[dict[Any, dict[str, Any]], Any]:
        """The dict that holds such objects, and the object's key in it (Jobs apart: tests read kube.jobs)."""
        if plural == "jobs":
            return self.jobs, (namespace, name)
        return self.objects, (plural, namespace, name)

    async def create(self, api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        self.calls.append(("create", plural, name))
        if self.refuse is not None and plural == "jobs":
            raise ApiException(422, "Invalid", self.refuse,
                               {"causes": [{"field": "spec.template.spec.containers[0].image"}]})
        store, key = self._where(plural, namespace, name)
        if key in store:
            raise ApiException(409, "AlreadyExists", f'{plural} "{name}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"] |= {"namespace": namespace, "uid": f"uid-{name}"}
        store[key] = obj
        return self._stamp(obj)

    async def read(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("read", plural, name))
        store, key = self._where(plural, namespace, name)
        return copy.deepcopy(store[key]) if key in store else None

    async def merge_patch(self, api: str, plural: str, namespace: str, name: str,
                          patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("merge_patch", plural, name))
        store, key = self._where(plural, namespace, name)
        if patch["metadata"]["uid"] != store[key]["metadata"]["uid"]:
            raise ApiException(422, "Invalid", "metadata.uid: field is immutable")
        _merge(store[key], patch)
        return self._stamp(store[key])

    async def delete(self, api: str, plural: str, namespace: str, name: str, uid: str) -> bool:
        self.calls.append(("delete", plural, name))
        store, key = self._where(plural, namespace, name)
        if key not in store:
            return False
        if store[key]["metadata"]["uid"] != uid:
            raise ApiException(409, "Conflict", "Precondition failed: UID in precondition")
        del store[key]
        return True

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Foreground: the Job stays, marked deleted, until the test removes it (as the garbage collector would)."""
        self.calls.append(("delete_job", namespace, name))
        job = self.jobs.get((namespace, name))
        if job is not None and job["metadata"]["uid"] == uid:
            job["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            self._stamp(job)

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]] | None:
        self.calls.append(("list_workloads", namespace, job_uid))
        return None  # no Kueue API here

    async def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_training", namespace, name))
        found = self.trainings.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def training_uids(self, namespace: str, not_older_than: str | None = None) -> dict[str, str] | None:
        self.calls.append(("training_uids", namespace))
        self.freshness.append((namespace, not_older_than))
        return {n: t["metadata"]["uid"] for (ns, n), t in self.trainings.items() if ns == namespace}

    async def patch_training_status(self, namespace: str, name: str, status: dict[str, Any],
                                    resource_version: str | None = None) -> dict[str, Any]:
        self.calls.append(("patch_training_status", namespace, name))
        body = self.trainings[namespace, name]
        if resource_version and resource_version != body["metadata"]["resourceVersion"]:
            raise ApiException(409, "Conflict", "the object has been modified; please apply your changes to the "
                                                "latest version and try again")
        body.setdefault("status", {})
        _merge(body["status"], copy.deepcopy(status))
        return self._stamp(body)

    async def claim_exists(self, namespace: str, name: str) -> bool | None:
        self.calls.append(("claim_exists", namespace, name))
        return name in self.claims

    async def list_pods(self, namespace: str, job_name: str, not_older_than: str | None = "0") -> list[dict[str, Any]]:
        self.calls.append(("list_pods", namespace, job_name))
        self.freshness.append((job_name, not_older_than))  # what the list asked of the server's cache
        return copy.deepcopy(self.pods.get(job_name, []))

    async def failed_creates(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        self.calls.append(("failed_creates", namespace, job_name))
        return copy.deepcopy(self.events.get(job_name, []))

    async def list_pods_labelled(self, namespace: str, selector: str,
                                 not_older_than: str | None = "0") -> list[dict[str, Any]]:
        self.calls.append(("list_pods_labelled", namespace, selector))
        return copy.deepcopy(self.pods.get(selector, []))

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int) -> str:
        self.calls.append(("read_log", pod, container))
        if (pod, container) not in self.logs:
            raise ApiException(400, "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start')
        return self.logs[pod, container]

    async def close(self) -> None:
        self.closed = True


NOW = "2026-12-06T12:00:00Z"


def context(kube: FakeKube, interval: float = 30.0) -> tuple[Any, list[tuple[str, str, str]]]:
    """A Context on the fake, its clock stopped at NOW; the second value collects the posted Events."""
    from im2txt_operator.controller.context import Context
    from im2txt_operator.metrics import Metrics

    events: list[tuple[str, str, str]] = []
    ctx = Context(kube=kube, metrics=Metrics(), interval=interval, now=lambda: NOW,  # type: ignore[arg-type]
                  post_event=lambda body, e: events.append((body["metadata"]["name"], e.type, e.reason)))
    return ctx, events
