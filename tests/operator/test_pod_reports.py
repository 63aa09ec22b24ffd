"""pod_reports: the failed container's reason, the sync sidecar's failed final upload, the published step."""

from __future__ import annotations

from typing import Any

from im2txt_operator.pod_reports import ContainerFailure, published_step, stage_failure, upload_failure


def _pod(name: str, phase: str, created: str, init: dict[str, tuple[int, str] | None] | None = None,
         main: dict[str, tuple[int, str] | None] | None = None) -> dict[str, Any]:
    """A pod whose containers ended with (exit code, termination message), or still run (None)."""
    def statuses(exits: dict[str, tuple[int, str] | None]) -> list[dict[str, Any]]:
        return [{"name": c, "state": {"running": {}} if e is None else
                 {"terminated": {"exitCode": e[0], "reason": "Error" if e[0] else "Completed", "message": e[1]}}}
                for c, e in exits.items()]

    init, main = init or {}, main or {}
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"initContainers": [{"name": c, **({"restartPolicy": "Always"} if c == "sync" else {})}
                                        for c in init],
                     "containers": [{"name": c} for c in main]},
            "status": {"phase": phase, "initContainerStatuses": statuses(init), "containerStatuses": statuses(main)}}


TRAINER = "trainer: --train_dir '/data/output/' is not writable: Permission denied\n"


def test_the_newest_failed_pods_cause_wins_over_the_sidecar_stopped_after_it() -> None:
    old = _pod("p-1", "Failed", "2026-12-06T10:00:00Z", main={"trainer": (2, "trainer: no files match\n")})
    new = _pod("p-2", "Failed", "2026-12-06T10:05:00Z", init={"fetch": (0, ""), "sync": (1, "sync: index names x\n")},
               main={"trainer": (2, TRAINER)})
    running = _pod("p-3", "Running", "2026-12-06T10:06:00Z", main={"trainer": None})
    assert stage_failure([old, running, new]) == ContainerFailure("p-2", "trainer", 2, TRAINER.strip())
    assert stage_failure([old, running, new]).text() == f"{TRAINER.strip()} (pod p-2, exit 2)"  # type: ignore[union-attr]


def test_an_init_container_that_failed_is_the_cause() -> None:
    pod = _pod("p", "Failed", "t", init={"output-check": (3, "output-check: spec.outputPath 'pvc://x/' is not "
                                                              "writable\n")}, main={"trainer": None})
    assert stage_failure([pod]) == ContainerFailure("p", "output-check", 3,
                                                    "output-check: spec.outputPath 'pvc://x/' is not writable")


def test_a_log_tail_gives_its_last_line_under_the_containers_name_and_long_ones_are_cut() -> None:
    tail = "Traceback (most recent call last):\n  File \"x\"\nMemoryError: out of host memory\n\n"
    assert stage_failure([_pod("p", "Failed", "t", main={"trainer": (1, tail)})]).reason == (  # type: ignore[union-attr]
        "trainer: MemoryError: out of host memory")
    oom = _pod("p", "Failed", "t", main={"trainer": (137, "")})
    oom["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    assert stage_failure([oom]).reason == "trainer: OOMKilled"  # type: ignore[union-attr]
    long = stage_failure([_pod("p", "Failed", "t", main={"trainer": (1, "x" * 1000)})])
    assert long is not None and len(long.reason) == 400 and long.reason.endswith("...")


def test_no_failure_without_a_failed_pod_or_a_nonzero_exit() -> None:
    assert stage_failure([_pod("p", "Running", "t", main={"trainer": None})]) is None
    assert stage_failure([_pod("p", "Failed", "t", main={"trainer": (0, "")})]) is None


def test_a_failed_final_upload_counts_until_a_later_pods_sidecar_ends_well() -> None:
    reason = "sync: final upload did not finish within 240 s; the bucket's index names model.ckpt-80"
    failed = _pod("p-1", "Succeeded", "2026-12-06T10:00:00Z", init={"sync": (1, reason + "\n")},
                  main={"trainer": (0, "")})
    assert upload_failure([failed]) == ContainerFailure("p-1", "sync", 1, reason)
    running = _pod("p-2", "Running", "2026-12-06T10:05:00Z", init={"sync": None}, main={"trainer": None})
    assert upload_failure([failed, running]) == ContainerFailure("p-1", "sync", 1, reason)
    ended_well = _pod("p-2", "Succeeded", "2026-12-06T10:05:00Z", init={"sync": (0, "")}, main={"trainer": (0, "")})
    assert upload_failure([failed, ended_well]) is None


def test_the_published_step_is_the_last_publish_line() -> None:
    log = ('msg="sync: published checkpoint model.ckpt-30 (index uploaded)"\n'
           'msg="sync: published checkpoint model.ckpt-1200 (index uploaded)"\nmsg="retrying"\n')
    assert published_step(log) == 1200
    assert published_step("msg=\"sync: uploading model.ckpt-40\"\n") is None
