"""spec.evaluation -> Evaluation: the evaluation beside training (evaluation.py builds its Deployment).

On by default: every UAI Train user uploads the validation shards (``val-?????-of-00004``) with the training data.
Without them the evaluator names the missing files in the EvaluationFailed condition and training goes on; set
``enabled: false`` to have no evaluation pod at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from im2txt_operator import pod_fields
from im2txt_operator.field_rules import FILE_NAME, SpecError, sub_object

FIELDS = ("enabled", "filePattern", "intervalSeconds", "numExamples", "bleu", "bleuImages", "resources")
# The reference evaluate.py's: the whole COCO validation split of im2txt's build script, every 10 minutes.
DEFAULT_FILE_PATTERN = "val-?????-of-00004"
DEFAULT_INTERVAL = 600
DEFAULT_EXAMPLES = 10132
DEFAULT_BLEU_IMAGES = 500
# CPU only: the GPU stays the trainer's. InceptionV3 on a batch of 32 at 299x299 needs about 1.3 GiB.
DEFAULT_RESOURCES: Mapping[str, Mapping[str, str | int]] = {"requests": {"cpu": "1", "memory": "2Gi"},
                                                            "limits": {"memory": "4Gi"}}


@dataclass(frozen=True)
class Evaluation:
    enabled: bool = True
    file_pattern: str = DEFAULT_FILE_PATTERN
    interval_seconds: int = DEFAULT_INTERVAL
    num_examples: int = DEFAULT_EXAMPLES
    bleu: bool = False
    bleu_images: int = DEFAULT_BLEU_IMAGES
    resources: Mapping[str, Mapping[str, str | int]] = field(default_factory=lambda: DEFAULT_RESOURCES)


def _int(value: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    got = value.get(key, default)
    if not isinstance(got, int) or isinstance(got, bool) or not lo <= got <= hi:
        raise SpecError(f"spec.evaluation.{key}", f"expected an integer between {lo} and {hi}, got {got!r}")
    return got


def _bool(value: Mapping[str, Any], key: str, default: bool) -> bool:
    got = value.get(key, default)
    if not isinstance(got, bool):
        raise SpecError(f"spec.evaluation.{key}", f"expected true or false, got {got!r}")
    return got


def parse_evaluation(spec: Mapping[str, Any]) -> Evaluation:
    value = sub_object(spec, "evaluation", FIELDS)
    pattern = value.get("filePattern", DEFAULT_FILE_PATTERN)
    if not isinstance(pattern, str) or len(pattern) > 255 or not FILE_NAME.fullmatch(pattern):
        raise SpecError("spec.evaluation.filePattern",
                        f"expected a file name pattern in spec.dataPath, without '/' or spaces, got {pattern!r}")
    resources = pod_fields.resources(value, "spec.evaluation", gpus_from=None) if "resources" in value \
        else DEFAULT_RESOURCES
    return Evaluation(enabled=_bool(value, "enabled", True), file_pattern=pattern,
                      interval_seconds=_int(value, "intervalSeconds", DEFAULT_INTERVAL, 60, 86400),
                      num_examples=_int(value, "numExamples", DEFAULT_EXAMPLES, 1, 10_000_000),
                      bleu=_bool(value, "bleu", False),
                      bleu_images=_int(value, "bleuImages", DEFAULT_BLEU_IMAGES, 1, 100_000),
                      resources=resources)
