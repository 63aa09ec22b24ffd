"""Run by test_trainer_distributed.py in its own process: logical CPU devices exist only if set up first.

    python trainer_mirrored_check.py

Splits the CPU into two logical devices, then for stage 1 and stage 2 runs one training step on one device over a
global batch of 4 and one MirroredStrategy step over the same batch split 2 + 2 (each half padded to its own
length, as the distributed input pipeline does), from the same weights. Prints one JSON line per stage with the
losses, the largest difference of every variable, how far the step moved it, and whether the replicas' copies
of every variable are identical; then one line on the multi-worker broadcast run over the two replicas.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from im2txt_trainer.config import ModelConfig, TrainingConfig  # noqa: E402
from im2txt_trainer.distribute import Placement, broadcast_from_chief, tf_variable  # noqa: E402
from im2txt_trainer.model import ShowAndTell  # noqa: E402
from im2txt_trainer.steps import make_train_step  # noqa: E402

# No dropout (its masks differ per device by nature); learning rates and BN decay that move every value by
# far more than the comparison tolerance.
CFG = ModelConfig.for_image_size(75, batch_size=4, vocab_size=12, embedding_size=16, num_lstm_units=16,
                                 lstm_dropout_keep_prob=1.0, inception_dropout_keep_prob=1.0)
TCFG = dataclasses.replace(TrainingConfig(), initial_learning_rate=2.0, train_inception_learning_rate=0.5,
                           batch_norm_decay=0.5)
LENGTHS = [6, 3, 5, 2]  # caption lengths: the halves hold 9 and 7 words, so a mean of per-replica means is wrong


def batch() -> tuple[tf.Tensor, ...]:
    images = tf.random.stateless_uniform([4, 75, 75, 3], seed=[1, 2], minval=-1, maxval=1)
    ids = tf.random.stateless_uniform([4, 6], seed=[3, 4], minval=0, maxval=12, dtype=tf.int64)
    mask = tf.sequence_mask(LENGTHS, 6, dtype=tf.int32)
    ids = ids * tf.cast(mask, tf.int64)
    targets = tf.roll(ids, -1, 1) * tf.cast(mask, tf.int64)
    return images, ids, targets, mask


def half(b: tuple[tf.Tensor, ...], i: int) -> tuple[tf.Tensor, ...]:
    rows = slice(2 * i, 2 * i + 2)
    t = max(LENGTHS[rows])
    return b[0][rows], b[1][rows, :t], b[2][rows, :t], b[3][rows, :t]


def values(model: ShowAndTell) -> dict[str, np.ndarray]:
    return {n: np.array(tf.convert_to_tensor(v)) for n, v in model.named_variables().items()}


def main() -> int:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    # A float64 InceptionV3: in float32 a stage-2 step is chaotic (max-pool and ReLU near-ties flip under
    # rounding), so even one device on the same batch in another order moves some weights differently by up
    # to 5%; in float64 that noise is ~1e-9, and a distribution error cannot hide in it.
    single = ShowAndTell(CFG, TCFG, seed=7, encoder_dtype="float64")
    with strategy.scope():
        mirrored = ShowAndTell(CFG, TCFG, encoder_dtype="float64")
    b = batch()
    halves = [half(b, 0), half(b, 1)]
    spec = tuple(tf.TensorSpec([2, *([None] if x.shape.rank == 2 else x.shape[1:])], x.dtype) for x in halves[0])
    ds = tf.data.Dataset.from_generator(lambda: iter(halves), output_signature=spec)
    dist = strategy.distribute_datasets_from_function(lambda ctx: ds)
    for stage2 in (False, True):
        # Stage 1 runs compiled, as train.py does. Stage 2 runs the same step eagerly: compiling two InceptionV3
        # replicas with gradients costs ~90 s here (train.py's compiled stage 2 runs in the multi-worker test).
        tf.config.run_functions_eagerly(stage2)
        before = values(single)
        for name, var in mirrored.named_variables().items():
            var.assign(before[name])
        one = make_train_step(single, stage2)(b)
        two = make_train_step(mirrored, stage2, strategy=strategy, element_spec=dist.element_spec)(next(iter(dist)))
        after_one, after_two = values(single), values(mirrored)
        copies = [[np.array(x) for x in tf_variable(v).values] for v in mirrored.named_variables().values()]
        print(json.dumps({
            "stage": 2 if stage2 else 1,
            "loss_single": [float(one[0]), float(one[1])], "loss_mirrored": [float(two[0]), float(two[1])],
            "max_diff": {n: float(np.max(np.abs(after_one[n] - after_two[n]), initial=0.0)) for n in after_one},
            "moved": {n: float(np.max(np.abs(after_one[n] - before[n]), initial=0.0)) for n in after_one},
            "replicas_agree": all(np.array_equal(c[0], c[1]) for c in copies),
        }))
    check_broadcast(strategy)
    return 0


def check_broadcast(strategy: tf.distribute.Strategy) -> None:
    """broadcast_from_chief over the two replicas, as if each were a worker: replica 1 ends up with replica 0's."""
    with strategy.scope():
        w = tf.Variable(np.zeros(3, np.float32))
        step = tf.Variable(0, dtype=tf.int64)
    for i, (wv, sv) in enumerate(zip(w.values, step.values, strict=True)):
        wv.assign([1.5 + i, -2.0, np.nan if i else 3.0])
        sv.assign(7 + i)
    as_if_two_workers = Placement(strategy, "multi_worker", num_workers=2, worker_index=0)
    broadcast_from_chief(as_if_two_workers, [w, step])
    print(json.dumps({"broadcast": [[np.asarray(x).tolist() for x in w.values], [int(x) for x in step.values]],
                      "any_worker": [as_if_two_workers.any_worker(False), as_if_two_workers.any_worker(True)]}))


if __name__ == "__main__":
    sys.exit(main())
