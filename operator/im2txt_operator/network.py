"""Settings -> the NetworkPolicy of a multi-node stage: TensorFlow's gRPC port only from the stage's own workers.

Pure. A MultiWorkerMirroredStrategy worker runs whatever graph it is sent on port 2222 (TensorFlow's security
policy), so every other pod, of this namespace or any other, is kept out: the policy selects the stage's pods (by
the job-name label the Job controller puts on them, as the headless Service does) and admits ingress only on that
port and only from those same pods. It takes effect where the cluster's network plugin enforces NetworkPolicy.
"""

from __future__ import annotations

from typing import Any

from im2txt_operator import names
from im2txt_operator.jobs import WORKER_PORT, stage_metadata, workers
from im2txt_operator.pods import Owner


def build_worker_policy(owner: Owner, stage: int) -> dict[str, Any]:
    """The NetworkPolicy <job>: the stage's workers accept connections only from each other, only on 2222."""
    job = names.stage_job(owner.name, stage)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": stage_metadata(owner, stage),
        "spec": {"podSelector": {"matchLabels": workers(job)}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": workers(job)}}],
                              "ports": [{"port": WORKER_PORT, "protocol": "TCP"}]}]},
    }
