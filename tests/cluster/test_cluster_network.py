"""NetworkPolicies on a real API server (issue 18.6): a multi-node stage's workers admit only each other on port
2222, through a policy owned by the training; the optional set (manifests/policies/network) is admitted as shipped.

What these tests show is what the API server stores and which real pods the selectors pick. No network plugin
runs in this tier, so nothing here enforces a policy: enforcement is the plugin's (Calico, Cilium, ...)."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import OPERATOR_NS, ROOT, Api, OperatorProcess, still, wait_for
from control_plane import ControlPlane

from im2txt_operator import tensorboard
from im2txt_operator.pods import Owner
from im2txt_operator.spec import parse_spec

pytestmark = pytest.mark.timeout(240)

POLICIES = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
SPEC: dict[str, Any] = {"dataPath": "pvc://coco-data/mscoco/", "outputPath": "pvc://runs/coco/", "numberOfSteps": 100,
                        "stage2NumberOfSteps": 300, "gpus": 0, "numNodes": 2, "export": False}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_a_multi_node_stage_admits_only_its_own_workers(admin: Api, ns: str, operator: OperatorProcess) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    training = admin.new_training(ns, "coco", SPEC)
    wait_for(lambda: admin.job(ns, "coco-stage1"), what="the stage 1 Job")
    policy = admin.get(POLICIES.format(ns=ns) + "/coco-stage1")
    assert policy is not None
    assert policy["metadata"]["ownerReferences"][0]["uid"] == training["metadata"]["uid"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 2222, "protocol": "TCP"}]
    assert rule["from"] == [{"podSelector": policy["spec"]["podSelector"]}]
    # The selector picks exactly the workers the real Job controller made, and not a pod of another Job.
    pods = wait_for(lambda: len(p := admin.pods(ns, "coco-stage1")) == 2 and p, timeout=60, what="two workers")
    assert all(_selects(policy["spec"]["podSelector"], p["metadata"]["labels"]) for p in pods)
    admin.finish_pods(ns, "coco-stage1")
    wait_for(lambda: len(admin.pods(ns, "coco-stage2")) == 2, timeout=60, what="stage 2's workers")
    assert not any(_selects(policy["spec"]["podSelector"], p["metadata"]["labels"])
                   for p in admin.pods(ns, "coco-stage2"))
    assert admin.get(POLICIES.format(ns=ns) + "/coco-stage2") is not None
    admin.delete(admin.trainings(ns, "coco"))
    wait_for(lambda: not admin.request("GET", POLICIES.format(ns=ns))["items"], timeout=60,
             what="the policies garbage-collected")


def test_a_tenants_policy_with_a_stage_name_is_named_and_left_alone(admin: Api, ns: str,
                                                                    operator: OperatorProcess) -> None:
    for claim in ("coco-data", "runs"):
        admin.claim(ns, claim)
    open_to_all = admin.create(POLICIES.format(ns=ns), {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "coco-stage1"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}})
    admin.new_training(ns, "coco", SPEC)
    ready = wait_for(lambda: (c := admin.condition(ns, "coco", "Ready")).get("reason") == "NetworkPolicyNotOwned"
                     and c, what="Ready=False NetworkPolicyNotOwned")
    assert f"NetworkPolicy coco-stage1 in namespace {ns} already exists" in ready["message"]
    still(lambda: admin.job(ns, "coco-stage1") is None and admin.get(POLICIES.format(ns=ns) + "/coco-stage1")[
        "metadata"]["resourceVersion"] == open_to_all["metadata"]["resourceVersion"], 3)


def test_the_optional_policy_set_is_admitted_and_selects_its_pods(installed: ControlPlane, admin: Api,
                                                                  ns: str) -> None:
    folder = ROOT / "manifests" / "policies" / "network"
    installed.kubectl("apply", "--server-side", "-n", ns, "-f", str(folder / "tensorboard.yaml"))
    installed.kubectl("apply", "--server-side", "-f", str(folder / "metrics.yaml"))
    try:
        board = admin.get(POLICIES.format(ns=ns) + "/im2txt-tensorboard-same-namespace")
        metrics = admin.get(POLICIES.format(ns=OPERATOR_NS) + "/im2txt-operator-metrics-from-monitoring")
        assert board is not None and metrics is not None
        assert board["spec"]["ingress"] == [{"from": [{"podSelector": {}}], "ports": [{"port": 6006,
                                                                                       "protocol": "TCP"}]}]
        assert metrics["spec"]["ingress"][0]["ports"] == [{"port": 9090, "protocol": "TCP"}]
        # They select what the operator and its TensorBoard really run as.
        operator_pods = installed.kubectl("get", "deployment", "im2txt-operator", "-n", OPERATOR_NS, "-o",
                                          "jsonpath={.spec.template.metadata.labels}").stdout
        assert all(f'"{k}":"{v}"' in operator_pods for k, v in metrics["spec"]["podSelector"]["matchLabels"].items())
        deployment = tensorboard.build_deployment(Owner("coco", ns, "u"), parse_spec(
            {**SPEC, "numNodes": 1, "tensorboard": {"enabled": True}}))
        assert _selects(board["spec"]["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
    finally:
        installed.kubectl("delete", "-f", str(folder / "metrics.yaml"), "--ignore-not-found")
