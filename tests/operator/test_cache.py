"""controller.cache: the fresher of two versions, our own writes skipped once, pod problems, Jobs by training."""

from __future__ import annotations

import asyncio
from typing import Any

from im2txt_operator.controller.cache import Cache, Entry, job_key, newer, owned_by, slim


def obj(rv: Any, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv, **meta}}


def test_newer_keeps_the_fresher_version_and_lets_opaque_ones_win() -> None:
    assert newer(obj("7"), obj("5")) == obj("7")  # a late watch event does not undo our write's answer
    assert newer(obj("5"), obj("7")) == obj("7")
    assert newer(None, obj("5")) == obj("5")
    assert newer(obj("7"), obj("x1")) == obj("x1")  # not integers: the incoming one wins
    assert newer(obj("7"), obj(None)) == obj(None)
    cached = slim(obj("7"))
    assert newer(cached, obj("7")) is cached  # the same version (our write's echo): kept, not slimmed again


def test_an_own_write_is_skipped_once_and_the_memory_stays_bounded() -> None:
    entry = Entry()
    entry.remember(obj("10"))
    assert entry.is_own(obj("10")) and not entry.is_own(obj("10"))  # its watch event, then nothing more
    assert not entry.is_own(obj("11"))
    entry.remember({"metadata": {}})  # no resourceVersion: nothing to remember
    assert entry.own == set()
    for rv in range(17):
        entry.remember(obj(str(rv)))
    assert len(entry.own) <= 16


def test_wrote_keeps_the_answer_and_skips_its_event() -> None:
    entry = Entry(body=obj("5"))
    entry.wrote(obj("9", name="coco"))
    assert entry.body == obj("9", name="coco") and entry.is_own(obj("9"))
    entry.wrote(obj("3"))  # an older answer than what the watch brought meanwhile: the cache keeps the newer
    assert entry.body == obj("9", name="coco")


def pod(reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {"name": "coco-stage1-x", "creationTimestamp": "2026-12-06T10:00:00Z"},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "trainer", "state": {"waiting": {"reason": reason, "message": message}}}]}}


def test_read_pod_problem_says_when_it_changed_and_marks_the_pods_read() -> None:
    entry = Entry(body={"metadata": {"namespace": "ml"}, "spec": {"credentialsSecret": "keys"}})
    assert not entry.pods_read
    missing = pod("CreateContainerConfigError", 'secret "keys" not found')
    assert entry.read_pod_problem("coco-stage1", [missing]) is True
    assert entry.pods_read and entry.pod_problem is not None
    assert entry.pod_problem[0] == "coco-stage1" and entry.pod_problem[1].reason == "SecretNotFound"
    assert entry.read_pod_problem("coco-stage1", [missing]) is False  # the same problem: nothing new
    assert entry.read_pod_problem("coco-stage1", []) is True and entry.pod_problem is None  # gone: fixed


def job(training: str | None, stage: str | None, uid: str = "t-uid", kind: str = "Im2txtTraining") -> dict[str, Any]:
    labels = {k: v for k, v in (("im2txt.dev/training", training), ("im2txt.dev/stage", stage)) if v}
    return {"metadata": {"namespace": "ml", "name": "j", "labels": labels,
                         "ownerReferences": [{"kind": kind, "uid": uid}]}}


def test_job_key_and_owner() -> None:
    assert job_key(job("coco", "1")) == (("ml", "coco"), "stage1")
    assert job_key(job("coco", "2")) == (("ml", "coco"), "stage2")
    assert job_key(job("coco", "export")) == (("ml", "coco"), "export")
    assert job_key(job(None, "1")) is None and job_key(job("coco", None)) is None
    body = {"metadata": {"uid": "t-uid"}}
    assert owned_by(job("coco", "1"), body)
    assert not owned_by(job("coco", "1", uid="other"), body)  # an earlier training's Job of the same name
    assert not owned_by(job("coco", "1", kind="Deployment"), body)


def test_fold_adds_only_roles_the_entry_has_not_seen() -> None:
    fresher = {**job("coco", "1"), "status": {"active": 1}}
    entry = Entry(jobs={"stage1": fresher})
    entry.fold([job("coco", "1"), job("coco", "2"), job(None, "1")])
    assert entry.jobs["stage1"] is fresher and set(entry.jobs) == {"stage1", "stage2"}


async def test_cache_renews_and_forgets() -> None:
    cache = Cache()
    a, b = cache.entry(("ml", "a")), cache.entry(("ml", "b"))
    assert cache.entry(("ml", "a")) is a and cache.get(("ml", "c")) is None
    a.body, b.body = {"metadata": {"uid": "ua"}, "status": {"phase": "Running"}}, {"metadata": {"uid": "ub"}}
    assert cache.statuses() == [{"phase": "Running"}, {}]
    renewed = cache.renew(("ml", "a"))
    assert renewed is not a and renewed.body is None and a.uid() == "ua" and renewed.uid() is None

    b.retry = asyncio.create_task(asyncio.sleep(3600))
    cache.forget(("ml", "b"))
    await asyncio.sleep(0)
    assert cache.get(("ml", "b")) is None and b.retry.cancelled()


def _served_job() -> dict[str, Any]:
    """A stage Job as the API serves it: with managedFields and the Job controller's status."""
    from im2txt_operator.jobs import build_job
    from im2txt_operator.pods import Owner
    from im2txt_operator.spec import parse_spec

    job = build_job(Owner("coco", "ml", "uid-1"), parse_spec({
        "dataPath": "ufile://data/coco/", "outputPath": "ufile://out/coco/", "credentialsSecret": "keys"}), 1)
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    job["metadata"] |= {"uid": "job-uid", "resourceVersion": "42", "managedFields": [
        {"manager": "im2txt-operator", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {}}}}] * 3}
    job["status"] = {"active": 1, "ready": 1, "startTime": "2026-12-06T10:00:00Z"}
    return job


def test_the_cache_keeps_what_the_controller_reads_and_not_the_rest() -> None:
    import json

    from im2txt_operator.job_state import job_state

    served = _served_job()
    kept = slim(served)
    assert "template" in served["spec"] and "managedFields" in served["metadata"]  # the input is left as it was
    assert "template" not in kept["spec"] and "managedFields" not in kept["metadata"]
    assert job_state(kept, 1) == job_state(served, 1)  # everything decide() reads of a Job
    assert job_key(kept) == job_key(served) and kept["metadata"]["ownerReferences"] == \
        served["metadata"]["ownerReferences"]
    assert len(json.dumps(kept)) * 4 < len(json.dumps(served))  # a quarter of the bytes, or less
    applied = {"metadata": {"name": "coco", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}", "note": "kept"}}, "spec": {"x": 1}}
    assert slim(applied) == {"metadata": {"name": "coco", "annotations": {"note": "kept"}}, "spec": {"x": 1}}
    assert newer(None, served) == kept  # what enters the cache is slim
    assert kept["spec"] == {"suspend": served["spec"]["suspend"]}  # all that is read of a Job's spec
    served["status"] |= {"uncountedTerminatedPods": {"succeeded": ["p"]}, "terminating": 0}
    assert slim(served)["status"] == {"active": 1, "ready": 1, "startTime": "2026-12-06T10:00:00Z"}


def test_two_trainings_in_the_cache_share_their_keys_and_short_values() -> None:
    """Each decoded object has its own copy of every string; the cache keeps one of each key and short value."""
    import json

    text = json.dumps({"metadata": {"name": "coco", "namespace": "ml"}, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "message": "stage 1 runs " + "x" * 40}]}})
    a, b = slim(json.loads(text)), slim(json.loads(text))
    assert a == b == json.loads(text)
    ca, cb = a["status"]["conditions"][0], b["status"]["conditions"][0]
    assert all(ka is kb for ka, kb in zip(ca, cb, strict=True))  # the keys: one copy
    assert ca["status"] is cb["status"] and a["status"]["phase"] is b["status"]["phase"]  # short values: one copy
    assert ca["message"] is not cb["message"]  # a long message stays the training's own


def test_a_job_is_kept_as_the_index_holds_it_and_fresher_only() -> None:
    served = _served_job()
    indexed = slim(served)
    entry = Entry()
    entry.keep_job("stage1", indexed)
    assert entry.jobs["stage1"] is indexed  # the index's copy, shared: not a second one
    older = slim({**served, "metadata": {**served["metadata"], "resourceVersion": "41"}})
    entry.keep_job("stage1", older)  # a late event: the fresher version stays
    assert entry.jobs["stage1"] is indexed
    later = slim({**served, "metadata": {**served["metadata"], "resourceVersion": "43"}})
    entry.keep_job("stage1", later)
    assert entry.jobs["stage1"] is later and "template" not in entry.jobs["stage1"]["spec"]


def test_what_the_cache_saw_is_kept_fresh_and_its_output_folder_indexed() -> None:
    cache = Cache()

    def training(uid: str, rv: str, output: str) -> dict[str, Any]:
        return {"metadata": {"name": "a", "namespace": "ml", "uid": uid, "resourceVersion": rv,
                             "creationTimestamp": "2026-12-01T00:00:00Z"}, "spec": {"outputPath": output}}

    probe = training("probe", "1", "ufile://b/run/")
    first = cache.saw(("ml", "a"), training("u1", "5", "ufile://b/run/"))
    assert cache.saw(("ml", "a"), training("u1", "4", "ufile://b/old/")) is first  # an older version: ignored
    assert first.body["metadata"]["resourceVersion"] == "5"
    assert [b["metadata"]["uid"] for b in cache.outputs.overlapping(probe)] == ["u1"]
    again = cache.saw(("ml", "a"), training("u2", "9", "ufile://b/new/"))  # deleted and made again
    assert again is not first and again.body["metadata"]["uid"] == "u2"
    assert list(cache.outputs.overlapping(probe)) == []
    cache.forget(("ml", "a"))
    assert list(cache.outputs.overlapping(training("p", "1", "ufile://b/new/"))) == []
