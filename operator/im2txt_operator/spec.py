"""Im2txtTraining spec -> typed, defaulted, validated Settings.

The API server already applies the CRD's defaults and validations; this module repeats them so that the
operator (and ``render``, which runs offline on plain YAML) never acts on a spec it does not understand.
Every error names the field and what is expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from im2txt_operator.paths import PvcPath, StoragePath, UFilePath, parse_path

GROUP = "im2txt.dev"
VERSION = "v1alpha1"
KIND = "Im2txtTraining"
PLURAL = "im2txttrainings"

# Defaults: the same values as the CRD schema (a test keeps the two in sync).
DEFAULTS: dict[str, Any] = {
    "stage": 1,
    "numberOfSteps": 1_000_000,
    "stage2NumberOfSteps": 3_000_000,
    "autoAdvance": True,
    "inputFilePattern": "train-?????-of-00256",
    "inceptionCheckpointFile": "inception_v3.ckpt",
    "image": "im2txt-trainer:0.1.0",
    "gpus": 1,
    "backoffLimit": 3,
    "checkpointIntervalSeconds": 600,
    "suspend": False,
    "dataCacheSize": "100Gi",
    "extraArgs": [],
}
UFILE_SUFFIX_DEFAULT = ".cn-bj.ufileos.com"
MAX_STEPS = 1_000_000_000_000

# Flags the operator sets from the spec; extraArgs may not override them.
RESERVED_FLAGS = ("input_file_pattern", "inception_checkpoint_file", "train_dir", "number_of_steps",
                  "train_inception")

_FILE_NAME = re.compile(r"[^/\s]+")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_SUFFIX = re.compile(r"\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i?|[mkMGTPE]|e[0-9]+)?")
_FLAG = re.compile(r"--[A-Za-z][A-Za-z0-9_-]*(=.*)?", re.DOTALL)
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class SpecError(ValueError):
    """A spec value the operator cannot use; ``field`` is the JSON path, e.g. ``spec.dataPath``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class UFileEndpoints:
    upload_suffix: str = UFILE_SUFFIX_DEFAULT
    download_suffix: str = UFILE_SUFFIX_DEFAULT


@dataclass(frozen=True)
class Settings:
    """One training's spec, defaulted and validated. Step targets are absolute global steps."""

    data_path: StoragePath
    output_path: StoragePath
    stage: int = 1
    number_of_steps: int = 1_000_000
    stage2_number_of_steps: int = 3_000_000
    auto_advance: bool = True
    input_file_pattern: str = "train-?????-of-00256"
    inception_checkpoint_file: str = "inception_v3.ckpt"
    credentials_secret: str | None = None
    ufile: UFileEndpoints = field(default_factory=UFileEndpoints)
    image: str = "im2txt-trainer:0.1.0"
    gpus: int = 1
    resources: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    max_run_seconds: int | None = None
    backoff_limit: int = 3
    checkpoint_interval_seconds: int = 600
    suspend: bool = False
    queue_name: str | None = None
    data_cache_size: str = "100Gi"
    extra_args: tuple[str, ...] = ()

    @property
    def uses_ufile(self) -> bool:
        return isinstance(self.data_path, UFilePath) or isinstance(self.output_path, UFilePath)

    def target(self, stage: int) -> int:
        """The absolute global-step target of a stage."""
        return self.number_of_steps if stage == 1 else self.stage2_number_of_steps

    def stages(self) -> tuple[int, ...]:
        """The stages this training runs, in order (autoAdvance off stops after stage 1)."""
        if self.stage == 2:
            return (2,)
        return (1, 2) if self.auto_advance else (1,)


def _int(spec: Mapping[str, Any], key: str, lo: int, hi: int | None = None) -> int:
    value = spec.get(key, DEFAULTS.get(key))
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(f"spec.{key}", f"expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise SpecError(f"spec.{key}", f"expected an integer {bounds}, got {value}")
    return value


def _bool(spec: Mapping[str, Any], key: str) -> bool:
    value = spec.get(key, DEFAULTS.get(key))
    if not isinstance(value, bool):
        raise SpecError(f"spec.{key}", f"expected true or false, got {value!r}")
    return value


def _str(spec: Mapping[str, Any], key: str, pattern: re.Pattern[str], expected: str,
         default: str | None = None, max_len: int = 1024) -> str | None:
    value = spec.get(key, DEFAULTS.get(key, default))
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len or not pattern.fullmatch(value):
        raise SpecError(f"spec.{key}", f"expected {expected}, got {value!r}")
    return value


def _int_as_str(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """int-or-string fields: a plain integer is a quantity too."""
    value = spec.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return {**spec, key: str(value)}
    return spec


def _path(spec: Mapping[str, Any], key: str) -> StoragePath:
    if key not in spec:
        raise SpecError(f"spec.{key}", "required: ufile://<bucket>/<prefix>/ or pvc://<claim>/<sub/path>")
    try:
        return parse_path(spec[key])
    except ValueError as e:
        raise SpecError(f"spec.{key}", str(e)) from None


def _quantity_map(value: object, where: str) -> dict[str, str | int]:
    if not isinstance(value, Mapping):
        raise SpecError(where, f"expected a map of resource quantities, got {value!r}")
    out: dict[str, str | int] = {}
    for name, q in value.items():
        if isinstance(q, bool) or not isinstance(q, (int, str)) or not _QUANTITY.fullmatch(str(q)):
            raise SpecError(f"{where}.{name}", f"expected a resource quantity such as 8 or 32Gi, got {q!r}")
        out[str(name)] = q
    return out


def _resources(spec: Mapping[str, Any]) -> dict[str, dict[str, str | int]]:
    value = spec.get("resources") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.resources", f"expected an object with requests and limits, got {value!r}")
    unknown = set(value) - {"requests", "limits"}
    if unknown:
        raise SpecError(f"spec.resources.{sorted(unknown)[0]}", "unknown field: expected requests or limits")
    return {k: _quantity_map(v, f"spec.resources.{k}") for k, v in value.items()}


def _node_selector(spec: Mapping[str, Any]) -> dict[str, str]:
    value = spec.get("nodeSelector") or {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise SpecError("spec.nodeSelector", f"expected a map of label names to string values, got {value!r}")
    return dict(value)


def _tolerations(spec: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    value = spec.get("tolerations") or []
    if not isinstance(value, list):
        raise SpecError("spec.tolerations", f"expected a list of tolerations, got {value!r}")
    out = []
    for i, t in enumerate(value):
        where = f"spec.tolerations[{i}]"
        if not isinstance(t, Mapping):
            raise SpecError(where, f"expected an object, got {t!r}")
        unknown = set(t) - {"key", "operator", "value", "effect", "tolerationSeconds"}
        if unknown:
            raise SpecError(f"{where}.{sorted(unknown)[0]}", "unknown field")
        if "operator" in t and t["operator"] not in _TOLERATION_OPERATORS:
            raise SpecError(f"{where}.operator", f"expected Exists or Equal, got {t['operator']!r}")
        if "effect" in t and t["effect"] not in _TOLERATION_EFFECTS:
            raise SpecError(f"{where}.effect",
                            f"expected NoSchedule, PreferNoSchedule or NoExecute, got {t['effect']!r}")
        out.append(dict(t))
    return tuple(out)


def _extra_args(spec: Mapping[str, Any]) -> tuple[str, ...]:
    value = spec.get("extraArgs", [])
    if not isinstance(value, list):
        raise SpecError("spec.extraArgs", f"expected a list of --flag=value strings, got {value!r}")
    for i, arg in enumerate(value):
        if not isinstance(arg, str) or not _FLAG.fullmatch(arg):
            raise SpecError(f"spec.extraArgs[{i}]", f"expected --flag or --flag=value, got {arg!r}")
        flag = arg[2:].split("=", 1)[0]
        if flag in RESERVED_FLAGS:
            raise SpecError(f"spec.extraArgs[{i}]",
                            f"--{flag} is set by the operator from the spec and may not be overridden")
    return tuple(value)


def _ufile(spec: Mapping[str, Any]) -> UFileEndpoints:
    value = spec.get("ufile") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.ufile", f"expected an object with uploadSuffix and downloadSuffix, got {value!r}")
    suffixes = {}
    for key in ("uploadSuffix", "downloadSuffix"):
        s = value.get(key, UFILE_SUFFIX_DEFAULT)
        if not isinstance(s, str) or not _SUFFIX.fullmatch(s):
            raise SpecError(f"spec.ufile.{key}", f"expected a host suffix such as .cn-bj.ufileos.com, got {s!r}")
        suffixes[key] = s
    return UFileEndpoints(upload_suffix=suffixes["uploadSuffix"], download_suffix=suffixes["downloadSuffix"])


def parse_spec(spec: Mapping[str, Any] | None) -> Settings:
    """Validate and default a training's ``spec``; raises SpecError naming the first bad field."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec", f"expected an object, got {spec!r}")
    stage = spec.get("stage", 1)
    if stage not in (1, 2) or isinstance(stage, bool):
        raise SpecError("spec.stage", f"expected 1 or 2, got {stage!r}")
    number_of_steps = _int(spec, "numberOfSteps", 1, MAX_STEPS)
    stage2 = _int(spec, "stage2NumberOfSteps", 2, MAX_STEPS)
    if stage2 <= number_of_steps:
        raise SpecError("spec.stage2NumberOfSteps",
                        f"must be greater than spec.numberOfSteps ({number_of_steps}): both are absolute "
                        f"global-step targets, got {stage2}")
    data_path = _path(spec, "dataPath")
    output_path = _path(spec, "outputPath")
    secret = _str(spec, "credentialsSecret", _DNS_SUBDOMAIN, "a Secret name (DNS subdomain)", max_len=253)
    uses_ufile = isinstance(data_path, UFilePath) or isinstance(output_path, UFilePath)
    if uses_ufile and secret is None:
        raise SpecError("spec.credentialsSecret",
                        "required when spec.dataPath or spec.outputPath is a ufile:// path "
                        "(a Secret with keys publicKey and privateKey)")
    max_run = spec.get("maxRunSeconds")
    return Settings(
        data_path=data_path,
        output_path=output_path,
        stage=stage,
        number_of_steps=number_of_steps,
        stage2_number_of_steps=stage2,
        auto_advance=_bool(spec, "autoAdvance"),
        input_file_pattern=_str(spec, "inputFilePattern", _FILE_NAME, "a file name pattern without '/'",
                                max_len=255) or "",
        inception_checkpoint_file=_str(spec, "inceptionCheckpointFile", _FILE_NAME, "a file name without '/'",
                                       max_len=255) or "",
        credentials_secret=secret,
        ufile=_ufile(spec),
        image=_str(spec, "image", re.compile(r"\S+"), "an image reference without spaces", max_len=512) or "",
        gpus=_int(spec, "gpus", 0, 16),
        resources=_resources(spec),
        node_selector=_node_selector(spec),
        tolerations=_tolerations(spec),
        max_run_seconds=None if max_run is None else _int(spec, "maxRunSeconds", 1),
        backoff_limit=_int(spec, "backoffLimit", 0, 100),
        checkpoint_interval_seconds=_int(spec, "checkpointIntervalSeconds", 10, 86400),
        suspend=_bool(spec, "suspend"),
        queue_name=_str(spec, "queueName", _LABEL_VALUE, "a label value (Kueue LocalQueue name)", max_len=63),
        data_cache_size=str(_str(_int_as_str(spec, "dataCacheSize"), "dataCacheSize", _QUANTITY,
                                 "a quantity such as 100Gi")),
        extra_args=_extra_args(spec),
    )


__all__ = ["DEFAULTS", "GROUP", "KIND", "PLURAL", "VERSION", "PvcPath", "Settings", "SpecError", "UFilePath",
           "parse_spec"]
