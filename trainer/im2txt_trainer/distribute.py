"""Which tf.distribute strategy trains, and the few collective chores of a multi-worker run.

- one device (the default strategy): one GPU, or the CPU;
- MirroredStrategy over this process's devices: all local GPUs, or `--cpu_devices` logical CPUs (tests, bench);
- MultiWorkerMirroredStrategy when TF_CONFIG (see cluster.py) names more than one worker.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from . import cluster

SUM = tf.distribute.ReduceOp.SUM


class DistributionError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Placement:
    strategy: tf.distribute.Strategy
    kind: str  # "off", "mirrored" or "multi_worker"
    num_workers: int
    worker_index: int

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    @property
    def multi_worker(self) -> bool:
        return self.num_workers > 1

    def any_worker(self, flag: bool) -> bool:
        """True when `flag` is true on any worker (a collective: every worker calls it at the same point)."""
        if not self.multi_worker:
            return flag
        return bool(self._count_true(tf.constant(1.0 if flag else 0.0)) > 0)

    @functools.cached_property
    def _count_true(self) -> Any:
        strategy = self.strategy
        return tf.function(lambda flag: strategy.reduce(SUM, strategy.run(tf.identity, args=(flag,)), axis=None))


def place(mode: str, cpu_devices: int, tf_config: Mapping[str, Any] | None) -> Placement:
    """Create the strategy; call before anything else initialises TensorFlow's devices."""
    workers = cluster.num_workers(tf_config)
    if mode == "auto":
        mode = "multi_worker" if workers > 1 else "local"
    if workers > 1 and mode != "multi_worker":
        raise DistributionError(f"TF_CONFIG names {workers} workers; --distribution={mode} would train them "
                                "independently (use auto or multi_worker)")
    if mode == "multi_worker":
        if workers < 2:
            raise DistributionError("--distribution=multi_worker needs TF_CONFIG (or IM2TXT_WORKER_HOSTS and "
                                    "JOB_COMPLETION_INDEX) naming at least two workers")
        if cpu_devices > 1:
            raise DistributionError("--cpu_devices splits one process's CPU; a multi-worker run uses one CPU "
                                    "device per worker")
        # Before any other TensorFlow call: it sets up the collectives across the workers.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return Placement(strategy, "multi_worker", workers, cluster.worker_index(tf_config))

    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    if mode == "local":
        mode = "mirrored" if len(devices) > 1 else "off"
    if mode == "mirrored":
        return Placement(tf.distribute.MirroredStrategy(devices), "mirrored", 1, 0)
    return Placement(tf.distribute.get_strategy(), "off", 1, 0)


def tf_variable(v: object) -> tf.Variable:
    """Keras layers hold their tf.Variable (a MirroredVariable under a strategy) inside a keras.Variable."""
    return v.value if isinstance(v, keras.Variable) else v  # type: ignore[return-value]


def broadcast_from_chief(placement: Placement, variables: Sequence[object]) -> None:
    """Give every worker the chief's values (it alone restored them from train_dir)."""
    if not placement.multi_worker:
        return
    strategy = placement.strategy
    variables = [tf_variable(v) for v in variables]
    # Summing the chief's values with everyone else's zeros is an exact broadcast with the public API. One
    # all-reduce per dtype (collectives pack their tensors together); integers travel as float64.
    groups: dict[tf.DType, list[tf.Variable]] = {}
    for v in variables:
        groups.setdefault(tf.float64 if v.dtype.is_integer else v.dtype, []).append(v)

    def replica_fn() -> dict[str, list[tf.Tensor]]:
        ctx = tf.distribute.get_replica_context()
        first = tf.equal(ctx.replica_id_in_sync_group, 0)
        out = {}
        for dtype, vs in groups.items():
            values = [tf.cast(tf.convert_to_tensor(v), dtype) for v in vs]
            out[dtype.name] = ctx.all_reduce(SUM, [tf.where(first, x, tf.zeros_like(x)) for x in values])
        return out

    @tf.function
    def broadcast() -> None:
        summed = strategy.run(replica_fn)
        for dtype, vs in groups.items():
            for v, x in zip(vs, summed[dtype.name], strict=True):
                strategy.extended.update(v, lambda var, value: var.assign(tf.cast(value, var.dtype)), args=(x,))

    broadcast()
