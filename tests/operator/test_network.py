"""network: the NetworkPolicy of a multi-node stage admits only that stage's own workers, only on port 2222.

What the API server stores and which real pods it selects: tests/cluster/test_cluster_network.py."""

from __future__ import annotations

from typing import Any

import pytest

from im2txt_operator.jobs import build_worker_service
from im2txt_operator.network import build_worker_policy
from im2txt_operator.pods import Owner

OWNER = Owner("coco", "ml", "uid-coco")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """matchLabels as the API server applies it (the policy uses nothing else)."""
    assert set(selector) == {"matchLabels"}
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("stage", [1, 2])
def test_named_labelled_and_owned_like_the_stage_job(stage: int) -> None:
    policy = build_worker_policy(OWNER, stage)
    assert (policy["apiVersion"], policy["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    meta = policy["metadata"]
    assert (meta["name"], meta["namespace"]) == (f"coco-stage{stage}", "ml")
    assert meta["labels"] == {"im2txt.dev/training": "coco", "im2txt.dev/role": f"stage{stage}",
                              "im2txt.dev/stage": str(stage), "app.kubernetes.io/managed-by": "im2txt-operator"}
    # Garbage-collected with the training; the owner is the only one that may change it (controlled_by).
    assert meta["ownerReferences"] == [{"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                                        "name": "coco", "uid": "uid-coco", "controller": True,
                                        "blockOwnerDeletion": True}]


def test_only_the_stages_workers_reach_them_and_only_on_the_grpc_port() -> None:
    spec = build_worker_policy(OWNER, 2)["spec"]
    assert spec["policyTypes"] == ["Ingress"]  # egress stays open: the workers fetch and upload
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": 2222, "protocol": "TCP"}]
    # A podSelector alone means this namespace only: no namespaceSelector, no ipBlock, no other peer.
    assert rule["from"] == [{"podSelector": spec["podSelector"]}]
    # The pods it guards are the ones the headless Service gives names to (the Job controller's job-name label).
    assert spec["podSelector"] == {"matchLabels": build_worker_service(OWNER, 2)["spec"]["selector"]}


def test_it_selects_its_own_workers_and_no_other_pod() -> None:
    selector = build_worker_policy(OWNER, 2)["spec"]["podSelector"]
    worker = {"batch.kubernetes.io/job-name": "coco-stage2", "batch.kubernetes.io/job-completion-index": "1",
              "im2txt.dev/training": "coco", "im2txt.dev/role": "stage2"}
    assert _selects(selector, worker)
    others = [
        {**worker, "batch.kubernetes.io/job-name": "coco-stage1", "im2txt.dev/role": "stage1"},  # the other stage
        {**worker, "batch.kubernetes.io/job-name": "coco2-stage2", "im2txt.dev/training": "coco2"},  # another
        {"im2txt.dev/training": "coco", "im2txt.dev/role": "stage2"},  # a tenant's pod wearing our labels only
        {"im2txt.dev/training": "coco", "im2txt.dev/role": "tensorboard"},
    ]
    assert not any(_selects(selector, labels) for labels in others)
    assert build_worker_policy(OWNER, 1)["spec"]["podSelector"] != selector
