"""Who this process is in a multi-worker run: TF_CONFIG, or one built from the Indexed Job's environment.

The operator runs a multi-node stage as a Kubernetes Indexed Job behind a headless Service and sets, in every pod,
    IM2TXT_WORKER_HOSTS=host0:port,host1:port,...   (every worker, in index order)
    JOB_COMPLETION_INDEX=i                          (set by Kubernetes for Indexed Jobs)
From these the trainer builds TF_CONFIG {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}.
A TF_CONFIG already in the environment wins. Worker 0 is the chief (unless TF_CONFIG names a "chief" task).
Pure functions on plain data; no TensorFlow here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

ENV_TF_CONFIG = "TF_CONFIG"
ENV_WORKER_HOSTS = "IM2TXT_WORKER_HOSTS"
ENV_INDEX = "JOB_COMPLETION_INDEX"
_TASK_TYPES = ("chief", "worker")


class ClusterError(ValueError):
    """The environment describes no usable cluster; the message names the variable."""


def _check_address(address: str, where: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"{where}: {address!r} is not host:port")
    return address


def _worker_hosts(raw: str) -> list[str]:
    hosts = [_check_address(h.strip(), ENV_WORKER_HOSTS) for h in raw.split(",")]
    if len(set(hosts)) != len(hosts):
        raise ClusterError(f"{ENV_WORKER_HOSTS}: a host:port appears twice in {raw!r}")
    return hosts


def _parse_tf_config(raw: str) -> dict[str, Any]:
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ClusterError(f"{ENV_TF_CONFIG} is not JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict):
        raise ClusterError(f"{ENV_TF_CONFIG} has no \"cluster\" object")
    cluster, task = cfg["cluster"], cfg.get("task") or {}
    unsupported = sorted(set(cluster) - set(_TASK_TYPES))
    if unsupported:
        raise ClusterError(f"{ENV_TF_CONFIG}: task types {unsupported} are not supported (only chief and worker: "
                           "synchronous all-reduce training)")
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ClusterError(f"{ENV_TF_CONFIG}: cluster.{kind} must be a non-empty list of host:port")
        for a in addresses:
            _check_address(str(a), f"{ENV_TF_CONFIG} cluster.{kind}")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ClusterError(f"{ENV_TF_CONFIG}: task {task!r} is not one of the cluster's tasks")
    return cfg


def tf_config_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The cluster this process belongs to, or None for a plain single-process run."""
    raw = env.get(ENV_TF_CONFIG, "").strip()
    if raw:
        return _parse_tf_config(raw)
    hosts_raw = env.get(ENV_WORKER_HOSTS, "").strip()
    if not hosts_raw:
        return None
    hosts = _worker_hosts(hosts_raw)
    index_raw = env.get(ENV_INDEX, "").strip()
    if not index_raw:
        if len(hosts) > 1:
            raise ClusterError(f"{ENV_WORKER_HOSTS} names {len(hosts)} workers but {ENV_INDEX} is unset "
                               "(run the stage as an Indexed Job)")
        index_raw = "0"
    if not index_raw.isdigit() or int(index_raw) >= len(hosts):
        raise ClusterError(f"{ENV_INDEX}={index_raw!r} is not an index into the {len(hosts)} workers of "
                           f"{ENV_WORKER_HOSTS}")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(index_raw)}}


def ensure_tf_config(env: MutableMapping[str, str]) -> dict[str, Any] | None:
    """tf_config_from_env, also writing TF_CONFIG into `env` (TensorFlow's resolver reads only TF_CONFIG)."""
    cfg = tf_config_from_env(env)
    if cfg is not None and not env.get(ENV_TF_CONFIG, "").strip():
        env[ENV_TF_CONFIG] = json.dumps(cfg)
    return cfg


def num_workers(tf_config: Mapping[str, Any] | None) -> int:
    if not tf_config:
        return 1
    return sum(len(tf_config["cluster"].get(kind, [])) for kind in _TASK_TYPES)


def worker_index(tf_config: Mapping[str, Any] | None) -> int:
    """This task's rank: the chief first, then the workers in order."""
    if not tf_config:
        return 0
    task, cluster = tf_config["task"], tf_config["cluster"]
    if task["type"] == "chief":
        return 0
    return len(cluster.get("chief", [])) + int(task["index"])


def is_chief(tf_config: Mapping[str, Any] | None) -> bool:
    """The one process that writes checkpoints and summaries and logs progress."""
    return worker_index(tf_config) == 0
