"""job_state: a Job read as the Job controller reports it, with the facts stamped on it when it was made."""

from __future__ import annotations

from im2txt_operator.job_state import facts, job_state

NOW = "2026-11-25T12:00:00Z"


def test_job_state_reads_the_job_controller_conditions() -> None:
    job = {"metadata": {"name": "t-stage1", "annotations": {"im2txt.dev/target-step": "123",
                                                           "im2txt.dev/image-size": "64"}},
           "spec": {"suspend": False, "template": {"spec": {"containers": [
               # The args are not read: the stamped target is what counts.
               {"name": "trainer", "args": ["--train_dir=/data/output/", "--number_of_steps=999"]}]}}},
           "status": {"startTime": NOW, "conditions": [
               {"type": "FailureTarget", "status": "True"},
               {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "m",
                "lastTransitionTime": NOW}]}}
    s = job_state(job, 1)
    assert (s.failed, s.succeeded, s.reason, s.target, s.completion_time) == (True, False, "BackoffLimitExceeded",
                                                                                123, NOW)
    assert s.image_size == 64 and job_state({"metadata": {"name": "t-stage1"}}, 1).target is None
    job["status"] = {"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                                      {"type": "Complete", "status": "True"}]}
    assert job_state(job, 1).succeeded


def test_facts_are_what_a_reconcile_reads_of_a_job() -> None:
    job = {"metadata": {"name": "t-stage1", "resourceVersion": "5", "uid": "u",
                        "ownerReferences": [{"kind": "Im2txtTraining", "uid": "t"}]},
           "spec": {"suspend": False}, "status": {"active": 1, "startTime": NOW}}
    bookkeeping = {**job, "metadata": {**job["metadata"], "resourceVersion": "6", "managedFields": [{}]},
                   "status": {**job["status"], "uncountedTerminatedPods": {"succeeded": ["p"]}, "terminating": 0}}
    assert facts(bookkeeping) == facts(job)
    assert facts({**job, "status": {"active": 0, "startTime": NOW}}) != facts(job)
    assert facts({**job, "spec": {"suspend": True}}) != facts(job)
    assert facts({**job, "metadata": {**job["metadata"], "ownerReferences": []}}) != facts(job)
