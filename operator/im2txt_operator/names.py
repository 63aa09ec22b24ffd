"""Every child's name by role, and the longest training name that leaves room for all of them.

A training's children are named ``<training>-<role>``: the Jobs of stage 1 and 2 (a multi-node stage's headless
Service shares its Job's name), the export Job, the TensorBoard Deployment and Service, and the evaluation
Deployment. The longest suffix sets the limit the CRD's rule on ``metadata.name`` and the operator's own check both
use (tests hold them equal).
"""

from __future__ import annotations

import re

from im2txt_operator.spec import SpecError

STAGE1, STAGE2, EXPORT, TENSORBOARD, EVALUATION = "stage1", "stage2", "export", "tensorboard", "evaluation"
ROLES = (STAGE1, STAGE2, EXPORT, TENSORBOARD, EVALUATION)
STAGE_ROLES = {1: STAGE1, 2: STAGE2}
NAME_LIMIT = 63  # a Job's job-name label value, and a Service's name (a DNS-1035 label)
MAX_TRAINING_NAME = NAME_LIMIT - max(len(f"-{role}") for role in ROLES)  # 51: "-tensorboard" is the longest


# A Service's name (TensorBoard's, a multi-node stage's) and a pod's hostname must be DNS-1035 labels; a custom
# resource's name may be any DNS subdomain ("2coco", "coco.v2"), which the children's names could not carry.
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def check(training: str) -> None:
    """Raise SpecError naming metadata.name when a child's name would be refused."""
    if not DNS_1035.fullmatch(training):
        raise SpecError("metadata.name", "must be lower-case letters, digits and '-', starting with a letter (a "
                        f"DNS-1035 label): the children's Services and pod hostnames carry it, got {training!r}")
    if len(training) > MAX_TRAINING_NAME:
        raise SpecError("metadata.name", f"must be at most {MAX_TRAINING_NAME} characters so that every child's name "
                        f"<name>-{TENSORBOARD} (the longest) fits {NAME_LIMIT}, got {len(training)}")


def child(training: str, role: str) -> str:
    """The name of the training's child with ``role`` (one of ROLES)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    check(training)
    return f"{training}-{role}"


def stage_role(stage: int) -> str:
    if stage not in STAGE_ROLES:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    return STAGE_ROLES[stage]


def stage_number(role: str) -> int | None:
    """1 or 2 for a stage's role; None for the others."""
    return {STAGE1: 1, STAGE2: 2}.get(role)


def stage_job(training: str, stage: int) -> str:
    """A stage's Job, and in a multi-node stage also its headless Service."""
    return child(training, stage_role(stage))


def export_job(training: str) -> str:
    return child(training, EXPORT)


def evaluation(training: str) -> str:
    """The evaluation Deployment (spec.evaluation)."""
    return child(training, EVALUATION)


def tensorboard(training: str) -> str:
    """The TensorBoard Deployment and its Service."""
    return child(training, TENSORBOARD)
