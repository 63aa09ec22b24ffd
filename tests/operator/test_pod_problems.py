"""pod_problems.pod_problem: a stage's pod that cannot start, from the kubelet's words in the pod's status."""

from __future__ import annotations

from typing import Any

from im2txt_operator.pod_problems import REASONS, create_problem, pod_problem, pods_overdue


def _pod(name: str, created: str, phase: str = "Pending", init: list[dict[str, Any]] | None = None,
         main: list[dict[str, Any]] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "status": {"phase": phase, "initContainerStatuses": init or [],
                                         "containerStatuses": main or []}}


def _waiting(container: str, reason: str, message: str = "", image: str = "") -> dict[str, Any]:
    return {"name": container, "image": image, "state": {"waiting": {"reason": reason, "message": message}}}


def test_a_missing_secret_names_the_field_and_what_is_expected() -> None:
    pods = [_pod("coco-stage1-a", "2026-01-01T00:00:00Z",
                 init=[_waiting("fetch", "CreateContainerConfigError", 'secret "ufile-keys" not found')])]
    problem = pod_problem(pods, "ufile-keys", "ml")
    assert problem is not None and (problem.field, problem.reason) == ("spec.credentialsSecret", "SecretNotFound")
    assert problem.message == ("spec.credentialsSecret: Secret 'ufile-keys' not found in namespace 'ml'; expected "
                               "a Secret with keys publicKey and privateKey (pod coco-stage1-a, container fetch: "
                               "CreateContainerConfigError)")


def test_a_missing_key_is_named() -> None:
    pods = [_pod("p", "t", main=[_waiting("trainer", "CreateContainerConfigError",
                                          "couldn't find key publicKey in Secret ml/ufile-keys")])]
    problem = pod_problem(pods, "ufile-keys", "ml")
    assert problem is not None and problem.reason == "SecretKeyMissing"
    assert problem.message.startswith("spec.credentialsSecret: Secret 'ufile-keys' lacks key publicKey; expected keys")


def test_other_config_errors_quote_the_kubelet() -> None:
    message = "container has runAsNonRoot and image will run as root"
    pods = [_pod("p", "t", init=[_waiting("fetch", "CreateContainerConfigError", message)])]
    problem = pod_problem(pods, "ufile-keys", "ml")
    assert problem is not None and problem.reason == "ContainerConfigError" and problem.message.endswith(message)
    # Another Secret than the training's is not blamed on spec.credentialsSecret.
    other = [_pod("p", "t", init=[_waiting("fetch", "CreateContainerConfigError", 'secret "x" not found')])]
    assert pod_problem(other, "ufile-keys", "ml").reason == "ContainerConfigError"  # type: ignore[union-attr]


def test_only_the_newest_live_pod_counts_and_ordinary_waits_are_no_problem() -> None:
    stuck = _waiting("fetch", "CreateContainerConfigError", 'secret "ufile-keys" not found')
    old = _pod("old", "2026-01-01T00:00:00Z", init=[stuck])
    new = _pod("new", "2026-01-01T00:05:00Z", phase="Running", main=[_waiting("trainer", "PodInitializing")])
    assert pod_problem([old, new], "ufile-keys", "ml") is None
    assert pod_problem([_pod("gone", "t", init=[stuck], deleting=True)], "ufile-keys", "ml") is None
    assert pod_problem([_pod("done", "t", phase="Failed", init=[stuck])], "ufile-keys", "ml") is None
    assert pod_problem([old], "ufile-keys", "ml") is not None
    assert pod_problem([], "ufile-keys", "ml") is None


def test_an_image_the_node_cannot_pull_names_spec_image_and_quotes_the_kubelet() -> None:
    # The kubelet's words on a real node (containerd) for a tag that does not exist.
    said = ('failed to pull and unpack image "registry.example/im2txt-trainer:nope": not found')
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
        image = "registry.example/im2txt-trainer:nope"
        pods = [_pod("coco-stage1-a", "t", init=[_waiting("fetch", reason, said, image)])]
        problem = pod_problem(pods, "ufile-keys", "ml")
        assert problem is not None and (problem.field, problem.reason) == ("spec.image", "ImagePullFailed"), reason
        assert problem.message == (
            "spec.image: the node cannot pull image 'registry.example/im2txt-trainer:nope': " + said + "; expected an "
            "image the cluster's nodes can pull (check the name, tag and registry access) (pod coco-stage1-a, "
            f"container fetch: {reason})")
    # A registry's long answer is cut, so status stays readable.
    long = [_pod("p", "t", main=[_waiting("trainer", "ErrImagePull", "x" * 5000, "img")])]
    assert len(pod_problem(long, "ufile-keys", "ml").message) < 600  # type: ignore[union-attr]


def test_reasons_lists_every_reason_a_pod_gives() -> None:
    cases = [("CreateContainerConfigError", 'secret "ufile-keys" not found'),
             ("CreateContainerConfigError", "couldn't find key publicKey in Secret ml/ufile-keys"),
             ("CreateContainerConfigError", "anything else"), ("ImagePullBackOff", "back-off")]
    found = {pod_problem([_pod("p", "t", main=[_waiting("trainer", r, m)])], "ufile-keys", "ml").reason  # type: ignore[union-attr]
             for r, m in cases}
    found.add(pod_problem([_unscheduled("p", "0/3 nodes are available")], None, "ml").reason)  # type: ignore[union-attr]
    found.add(create_problem([{"message": "quota"}], "coco-stage1").reason)  # type: ignore[union-attr]
    assert found == REASONS


def _unscheduled(name: str, message: str) -> dict[str, Any]:
    pod = _pod(name, "t")
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": message}]
    return pod


def test_a_pod_no_node_fits_quotes_the_scheduler_and_names_the_field_that_asked() -> None:
    words = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available"
    problem = pod_problem([_unscheduled("coco-stage1-x", words)], None, "ml")
    assert problem is not None and (problem.field, problem.reason) == ("spec.gpus", "Unschedulable")
    assert problem.message == f"spec.gpus: no node can run pod coco-stage1-x; the scheduler says: {words}"
    taint = pod_problem([_unscheduled("p", "0/2 nodes are available: 2 node(s) had untolerated taint {gpu: x}")],
                        None, "ml")
    assert taint is not None and taint.field == "spec.tolerations"
    scheduled = _unscheduled("p", "")
    scheduled["status"]["conditions"][0] |= {"status": "True", "reason": ""}
    assert pod_problem([scheduled], None, "ml") is None


def test_pods_the_job_controller_cannot_create_quote_its_newest_event() -> None:
    events = [{"message": "Error creating: old", "lastTimestamp": "2026-12-06T10:00:00Z"},
              {"message": 'Error creating: pods "coco-stage1-x" is forbidden: exceeded quota: q',
               "lastTimestamp": "2026-12-06T11:00:00Z"}]
    problem = create_problem(events, "coco-stage1")
    assert problem is not None and (problem.field, problem.reason) == ("spec", "PodCreateFailed")
    assert problem.message.endswith("Job coco-stage1: Error creating: pods \"coco-stage1-x\" is forbidden: "
                                    "exceeded quota: q")
    assert create_problem([], "coco-stage1") is None


def test_a_job_is_overdue_for_pods_after_the_grace_and_when_its_age_is_unknown() -> None:
    synced = {"startTime": "2026-12-06T12:00:01Z"}  # the Job controller has synced it
    job = {"metadata": {"creationTimestamp": "2026-12-06T12:00:00Z"}, "status": synced}
    assert not pods_overdue(job, "2026-12-06T12:00:09Z")
    assert pods_overdue(job, "2026-12-06T12:00:10Z")
    assert pods_overdue({"metadata": {}, "status": synced}, "2026-12-06T12:00:00Z")  # no age to go by: ask
    assert pods_overdue({"metadata": {"creationTimestamp": "yesterday"}, "status": synced}, "2026-12-06T12:00:00Z")
    # Not synced yet by the Job controller, however old: it has not tried to create a pod, so none failed.
    assert not pods_overdue({**job, "status": {}}, "2026-12-06T13:00:00Z")
