"""A Job the API refuses, or one in the way, reads as a spec problem naming the training's field."""

from __future__ import annotations

import pytest

from im2txt_operator.jobs import Owner, build_job
from im2txt_operator.paths import PvcPath, UFilePath
from im2txt_operator.rejections import is_refusal, not_owned, rejected, spec_field
from im2txt_operator.spec import Settings

OWNER = Owner(name="coco", namespace="ml", uid="u-1")
UFILE = Settings(data_path=UFilePath("data-bucket", "coco/"), output_path=UFilePath("out-bucket", "run/"),
                 credentials_secret="keys")
PVC = Settings(data_path=PvcPath("data", "coco"), output_path=PvcPath("runs", "coco"))


@pytest.mark.parametrize(("job_field", "expected"), [
    ("spec.template.spec.nodeSelector", "spec.nodeSelector"),
    ("spec.template.spec.nodeSelector[bad key]", "spec.nodeSelector"),
    ("spec.template.spec.tolerations[1].value", "spec.tolerations[1]"),
    ("spec.template.spec.containers[0].image", "spec.image"),
    ("spec.template.spec.initContainers[1].image", "spec.image"),
    ("spec.template.spec.containers[0].resources.requests[memory]", "spec.resources"),
    ("spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "spec.gpus"),
    ("spec.template.spec.containers[0].args[5]", "spec.extraArgs"),
    ("spec.activeDeadlineSeconds", "spec.maxRunSeconds"),
    ("spec.backoffLimit", "spec.backoffLimit"),
    ("metadata.labels", "metadata.name"),
    ("metadata.labels[kueue.x-k8s.io/queue-name]", "spec.queueName"),
    ("metadata.name", "metadata.name"),
    ("spec.template.spec.schedulerName", "spec"),
])
def test_job_fields_map_to_spec_fields(job_field: str, expected: str) -> None:
    assert spec_field(job_field) == expected


@pytest.mark.parametrize(("settings", "job_field", "expected"), [
    (PVC, "spec.template.spec.containers[0].volumeMounts[0].subPath", "spec.dataPath"),
    (PVC, "spec.template.spec.containers[0].volumeMounts[1].subPath", "spec.outputPath"),
    (PVC, "spec.template.spec.volumes[1].persistentVolumeClaim.claimName", "spec.outputPath"),
    # The sync sidecar mounts only the output volume: its mount 0 is the output, not the data.
    (UFILE, "spec.template.spec.initContainers[1].volumeMounts[0].mountPath", "spec.outputPath"),
    (UFILE, "spec.template.spec.initContainers[0].volumeMounts[0].mountPath", "spec.dataPath"),
    (UFILE, "spec.template.spec.volumes[0].emptyDir.sizeLimit", "spec.dataPath"),
    (UFILE, "spec.template.spec.containers[0].volumeMounts[9].subPath", "spec"),
])
def test_volume_fields_are_read_from_the_refused_manifest(settings: Settings, job_field: str, expected: str) -> None:
    assert spec_field(job_field, build_job(OWNER, settings, 1)) == expected


def test_rejection_names_the_field_and_quotes_the_server() -> None:
    job = build_job(OWNER, PVC, 1)
    message = ('Job.batch "coco-stage1" is invalid: spec.template.spec.containers[0].volumeMounts[0].subPath: '
               "Invalid value: \"../x\": must not contain '..'")
    problem = rejected(job, message, {"causes": [
        {"reason": "FieldValueInvalid", "field": "spec.template.spec.containers[0].volumeMounts[0].subPath"}]})
    assert (problem.field, problem.reason) == ("spec.dataPath", "JobRejected")
    assert problem.message == f"spec.dataPath: the API server refused Job coco-stage1: {message}"
    assert rejected(job, "denied", None).field == "spec"


def test_a_job_of_someone_else_is_not_owned() -> None:
    other = {"metadata": {"name": "coco-stage1", "ownerReferences": [
        {"kind": "Im2txtTraining", "name": "coco", "uid": "old-uid", "controller": True}]}}
    problem = not_owned(other, "coco", "ml")
    assert (problem.field, problem.reason) == ("metadata.name", "JobNotOwned")
    assert "Job coco-stage1 in namespace ml already exists" in problem.message
    assert "Im2txtTraining 'coco' (uid old-uid)" in problem.message
    assert "has no controller" in not_owned({"metadata": {"name": "coco-stage1"}}, "coco", "ml").message


@pytest.mark.parametrize(("status", "message", "refusal"), [
    (422, 'Job.batch "c-stage1" is invalid: spec.template.spec.nodeSelector: Invalid value: "a b"', True),
    (400, "bad request", True),
    (422, "jobs.batch \"c-stage1\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no",
     True),
    (403, 'admission webhook "validate.kyverno.svc" denied the request: image registry not allowed', True),
    # RBAC and quota answer 403 too; those are the cluster's state, retried, not a spec problem.
    (403, 'jobs.batch is forbidden: User "system:serviceaccount:s:op" cannot create resource "jobs"', False),
    (403, 'jobs.batch "c-stage1" is forbidden: exceeded quota: q, requested: count/jobs.batch=1, used: 5', False),
    (409, "already exists", False),
    (500, "etcdserver: request timed out", False),
])
def test_which_api_errors_refuse_the_job_itself(status: int, message: str, refusal: bool) -> None:
    assert is_refusal(status, message) is refusal


def test_a_denial_that_names_no_field_blames_the_spec_and_quotes_the_policy() -> None:
    job = {"metadata": {"name": "coco-stage1"}}
    message = 'jobs.batch "coco-stage1" is forbidden: ValidatingAdmissionPolicy p with binding b denied request: no'
    problem = rejected(job, message, {"name": "coco-stage1", "group": "batch", "kind": "jobs"})
    assert problem.field == "spec" and problem.message == f"spec: the API server refused Job coco-stage1: {message}"
