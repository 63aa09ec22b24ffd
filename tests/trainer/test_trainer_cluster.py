"""The multi-worker contract with the operator: TF_CONFIG from IM2TXT_WORKER_HOSTS + JOB_COMPLETION_INDEX."""

from __future__ import annotations

import json

import pytest

from im2txt_trainer import cluster

HOSTS = "t-stage1-0.t:2222,t-stage1-1.t:2222,t-stage1-2.t:2222"


def test_indexed_job_environment_becomes_tf_config():
    cfg = cluster.tf_config_from_env({"IM2TXT_WORKER_HOSTS": HOSTS, "JOB_COMPLETION_INDEX": "2"})
    assert cfg == {"cluster": {"worker": ["t-stage1-0.t:2222", "t-stage1-1.t:2222", "t-stage1-2.t:2222"]},
                   "task": {"type": "worker", "index": 2}}
    assert (cluster.num_workers(cfg), cluster.worker_index(cfg), cluster.is_chief(cfg)) == (3, 2, False)
    zero = cluster.tf_config_from_env({"IM2TXT_WORKER_HOSTS": HOSTS, "JOB_COMPLETION_INDEX": "0"})
    assert cluster.is_chief(zero) and cluster.worker_index(zero) == 0


def test_spaces_around_hosts_are_ignored():
    cfg = cluster.tf_config_from_env({"IM2TXT_WORKER_HOSTS": " a:1 , b:2 ", "JOB_COMPLETION_INDEX": "1"})
    assert cfg["cluster"]["worker"] == ["a:1", "b:2"] and cfg["task"]["index"] == 1


def test_no_cluster_is_a_single_process():
    assert cluster.tf_config_from_env({}) is None
    assert cluster.tf_config_from_env({"JOB_COMPLETION_INDEX": "0"}) is None  # an Indexed Job of one pod
    assert (cluster.num_workers(None), cluster.worker_index(None), cluster.is_chief(None)) == (1, 0, True)


def test_one_host_needs_no_index():
    assert cluster.tf_config_from_env({"IM2TXT_WORKER_HOSTS": "a:1"})["task"] == {"type": "worker", "index": 0}


def test_tf_config_wins_over_the_indexed_job_variables():
    given = {"cluster": {"worker": ["x:1", "y:2"]}, "task": {"type": "worker", "index": 1}}
    env = {"TF_CONFIG": json.dumps(given), "IM2TXT_WORKER_HOSTS": HOSTS, "JOB_COMPLETION_INDEX": "0"}
    assert cluster.tf_config_from_env(env) == given


def test_a_chief_task_is_rank_zero():
    cfg = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}}
    assert (cluster.num_workers(cfg), cluster.worker_index(cfg), cluster.is_chief(cfg)) == (3, 1, False)
    cfg["task"] = {"type": "chief", "index": 0}
    assert cluster.is_chief(cfg)


def test_ensure_writes_tf_config_only_when_built():
    env = {"IM2TXT_WORKER_HOSTS": "a:1,b:2", "JOB_COMPLETION_INDEX": "1"}
    cfg = cluster.ensure_tf_config(env)
    assert json.loads(env["TF_CONFIG"]) == cfg
    given = json.dumps({"cluster": {"worker": ["x:1"]}, "task": {"type": "worker", "index": 0}})
    env = {"TF_CONFIG": given}
    cluster.ensure_tf_config(env)
    assert env == {"TF_CONFIG": given}
    env = {}
    assert cluster.ensure_tf_config(env) is None and env == {}


@pytest.mark.parametrize(("env", "message"), [
    ({"IM2TXT_WORKER_HOSTS": "a:1,b:2"}, r"names 2 workers but JOB_COMPLETION_INDEX is unset"),
    ({"IM2TXT_WORKER_HOSTS": "a:1,b:2", "JOB_COMPLETION_INDEX": "2"}, r"JOB_COMPLETION_INDEX='2' is not an index"),
    ({"IM2TXT_WORKER_HOSTS": "a:1,b:2", "JOB_COMPLETION_INDEX": "-1"}, r"JOB_COMPLETION_INDEX='-1'"),
    ({"IM2TXT_WORKER_HOSTS": "a:1,b", "JOB_COMPLETION_INDEX": "0"}, r"IM2TXT_WORKER_HOSTS: 'b' is not host:port"),
    ({"IM2TXT_WORKER_HOSTS": "a:1,,b:2", "JOB_COMPLETION_INDEX": "0"}, r"'' is not host:port"),
    ({"IM2TXT_WORKER_HOSTS": "a:99999", "JOB_COMPLETION_INDEX": "0"}, r"'a:99999' is not host:port"),
    ({"IM2TXT_WORKER_HOSTS": "a:1,a:1", "JOB_COMPLETION_INDEX": "0"}, r"appears twice"),
    ({"TF_CONFIG": "{not json"}, r"TF_CONFIG is not JSON"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker",
                                                                                      "index": 0}})},
     r"task types \['ps'\] are not supported"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}})},
     r"is not one of the cluster's tasks"),
])
def test_bad_environments_are_named(env, message):
    with pytest.raises(cluster.ClusterError, match=message):
        cluster.tf_config_from_env(env)
