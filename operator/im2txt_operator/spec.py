"""Im2txtTraining spec -> typed, defaulted, validated Settings.

The API server already applies the CRD's defaults and validations; this module repeats them so that the
operator (and ``render``, which runs offline on plain YAML) never acts on a spec it does not understand, nor
builds a Job the Job API would refuse. Every error names the field and what is expected. The CRD's patterns live
in ``field_rules``; the fields that go into the pods (resources, nodeSelector, tolerations, extraArgs) are parsed
in ``pod_fields``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from im2txt_operator import pod_fields
from im2txt_operator.evaluation_spec import Evaluation, parse_evaluation
from im2txt_operator.field_rules import (
    DNS_SUBDOMAIN,
    FILE_NAME,
    HOST_SUFFIX,
    LABEL_VALUE,
    MAX_ID,
    MAX_NODES,
    MAX_STEPS,
    QUANTITY,
    SpecError,
    sub_object,
)
from im2txt_storage.paths import PvcPath, StoragePath, UFilePath, parse_path

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
    "numNodes": 1,
    "backoffLimit": 3,
    "checkpointIntervalSeconds": 600,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "suspend": False,
    "export": True,
    "dataCacheSize": "100Gi",
    "extraArgs": [],
}
SPEC_FIELDS = frozenset({*DEFAULTS, "dataPath", "outputPath", "credentialsSecret", "ufile", "tensorboard", "resources",
                         "evaluation", "nodeSelector", "tolerations", "maxRunSeconds", "queueName"})
UFILE_SUFFIX_DEFAULT = ".cn-bj.ufileos.com"
# The domains a training's UFile host may be in unless the cluster admin says otherwise: UCloud's own (regional
# <region>.ufileos.com, internal-<region>.ufileos.com, and the older ufile.ucloud.cn / ufile.ucloud.com.cn).
UFILE_DOMAINS = (".ufileos.com", ".ufile.ucloud.cn", ".ufile.ucloud.com.cn")

@dataclass(frozen=True)
class TensorBoard:
    """spec.tensorboard: a TensorBoard Deployment + Service on the training's output, owned by the training."""

    enabled: bool = False
    interval_seconds: int = 60  # how often a ufile:// output's event files are mirrored
    # A Secret with a read-only UFile key pair (a token scoped to list and download) for the mirror; None: the
    # training's own key pair (spec.credentialsSecret).
    credentials_secret: str | None = None


@dataclass(frozen=True)
class UFileEndpoints:
    upload_suffix: str = UFILE_SUFFIX_DEFAULT
    download_suffix: str = UFILE_SUFFIX_DEFAULT
    insecure_http: bool = False  # the operator's --ufile-insecure-http, never the spec's: HTTPS unless the admin says


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
    tensorboard: TensorBoard = field(default_factory=TensorBoard)
    evaluation: Evaluation = field(default_factory=Evaluation)
    image: str = "im2txt-trainer:0.1.0"
    gpus: int = 1
    num_nodes: int = 1  # pods per stage: > 1 is one Indexed Job, MultiWorkerMirroredStrategy across them
    resources: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    max_run_seconds: int | None = None
    backoff_limit: int = 3
    checkpoint_interval_seconds: int = 600
    run_as_user: int = 1000  # the trainer image's user; never 0 (restricted Pod Security Standard)
    run_as_group: int = 1000  # also the fsGroup, so the trainer can write an output claim
    suspend: bool = False
    export: bool = True  # a SavedModel after stage 2 (a third, short Job)
    queue_name: str | None = None
    data_cache_size: str = "100Gi"
    extra_args: tuple[str, ...] = ()

    @property
    def image_size(self) -> int | None:
        """--image_size=N from extraArgs (the last one, as the trainer's parser takes it); None when unset."""
        sizes = [int(a.split("=", 1)[1]) for a in self.extra_args
                 if a.startswith("--image_size=") and a.split("=", 1)[1].isdigit()]
        return sizes[-1] if sizes else None

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


def _tensorboard(spec: Mapping[str, Any]) -> TensorBoard:
    value = sub_object(spec, "tensorboard", ("enabled", "intervalSeconds", "credentialsSecret"))
    enabled = value.get("enabled", False)
    if not isinstance(enabled, bool):
        raise SpecError("spec.tensorboard.enabled", f"expected true or false, got {enabled!r}")
    interval = value.get("intervalSeconds", 60)
    if not isinstance(interval, int) or isinstance(interval, bool) or not 10 <= interval <= 3600:
        raise SpecError("spec.tensorboard.intervalSeconds",
                        f"expected an integer between 10 and 3600, got {interval!r}")
    secret = value.get("credentialsSecret")
    if secret is not None and (not isinstance(secret, str) or len(secret) > 253 or not DNS_SUBDOMAIN.fullmatch(secret)):
        raise SpecError("spec.tensorboard.credentialsSecret",
                        f"expected a Secret name (DNS subdomain) with a read-only key pair, got {secret!r}")
    return TensorBoard(enabled=enabled, interval_seconds=interval, credentials_secret=secret)


def _ufile(spec: Mapping[str, Any], domains: Sequence[str] | None, insecure_http: bool) -> UFileEndpoints:
    """spec.ufile; the suffixes must be inside ``domains`` (None: no UFile path, so no request goes anywhere)."""
    value = sub_object(spec, "ufile", ("uploadSuffix", "downloadSuffix"))
    suffixes = {}
    for key in ("uploadSuffix", "downloadSuffix"):
        s = value.get(key, UFILE_SUFFIX_DEFAULT)
        if not isinstance(s, str) or not HOST_SUFFIX.fullmatch(s):
            raise SpecError(f"spec.ufile.{key}", f"expected a host suffix such as .cn-bj.ufileos.com, got {s!r}")
        if domains is not None and not any(s == d or s.endswith(d) for d in domains):
            raise SpecError(f"spec.ufile.{key}", f"{s!r} is not in a UFile domain this cluster allows "
                            f"({', '.join(domains)}): the storage containers send requests signed with the "
                            "training's key pair to that host; the cluster admin sets the list (the operator's "
                            "--ufile-domains)")
        suffixes[key] = s
    return UFileEndpoints(upload_suffix=suffixes["uploadSuffix"], download_suffix=suffixes["downloadSuffix"],
                          insecure_http=insecure_http)


def folder(path: StoragePath) -> str:
    """The path as a folder URL ending in "/", so that one path is inside another exactly when it starts with it."""
    return path.url if path.url.endswith("/") else path.url + "/"


def parse_spec(spec: Mapping[str, Any] | None, ufile_domains: Sequence[str] = UFILE_DOMAINS, *,
               insecure_http: bool = False) -> Settings:
    """Validate and default a training's ``spec``; raises SpecError naming the first bad field. ``ufile_domains``:
    the host suffixes spec.ufile may name (the operator's --ufile-domains; UCloud's public UFile domains by
    default); ``insecure_http``: the operator's --ufile-insecure-http (no spec field can ask for plain HTTP)."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec", f"expected an object, got {spec!r}")
    unknown = set(spec) - SPEC_FIELDS
    if unknown:  # the API server drops (or, with strict field validation, refuses) them; render sees them
        raise SpecError(f"spec.{sorted(unknown)[0]}", "unknown field")
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
    secret = _str(spec, "credentialsSecret", DNS_SUBDOMAIN, "a Secret name (DNS subdomain)", max_len=253)
    uses_ufile = isinstance(data_path, UFilePath) or isinstance(output_path, UFilePath)
    if uses_ufile and secret is None:
        raise SpecError("spec.credentialsSecret",
                        "required when spec.dataPath or spec.outputPath is a ufile:// path "
                        "(a Secret with keys publicKey and privateKey)")
    if folder(output_path).startswith(folder(data_path)):
        raise SpecError("spec.outputPath", f"must not be spec.dataPath or inside it ({data_path.url}): old "
                        f"checkpoints are pruned in the output path, which would delete data, got {output_path.url}")
    max_run = spec.get("maxRunSeconds")
    return Settings(
        data_path=data_path,
        output_path=output_path,
        stage=stage,
        number_of_steps=number_of_steps,
        stage2_number_of_steps=stage2,
        auto_advance=_bool(spec, "autoAdvance"),
        input_file_pattern=_str(spec, "inputFilePattern", FILE_NAME, "a file name pattern without '/'",
                                max_len=255) or "",
        inception_checkpoint_file=_str(spec, "inceptionCheckpointFile", FILE_NAME, "a file name without '/'",
                                       max_len=255) or "",
        credentials_secret=secret,
        ufile=_ufile(spec, ufile_domains if uses_ufile else None, insecure_http),
        tensorboard=_tensorboard(spec),
        evaluation=parse_evaluation(spec),
        image=_str(spec, "image", re.compile(r"\S+"), "an image reference without spaces", max_len=512) or "",
        gpus=_int(spec, "gpus", 0, 16),
        num_nodes=_int(spec, "numNodes", 1, MAX_NODES),
        resources=pod_fields.resources(spec),
        node_selector=pod_fields.node_selector(spec),
        tolerations=pod_fields.tolerations(spec),
        max_run_seconds=None if max_run is None else _int(spec, "maxRunSeconds", 1),
        backoff_limit=_int(spec, "backoffLimit", 0, 100),
        checkpoint_interval_seconds=_int(spec, "checkpointIntervalSeconds", 10, 86400),
        run_as_user=_int(spec, "runAsUser", 1, MAX_ID),
        run_as_group=_int(spec, "runAsGroup", 1, MAX_ID),
        suspend=_bool(spec, "suspend"),
        export=_bool(spec, "export"),
        queue_name=_str(spec, "queueName", LABEL_VALUE, "a label value (Kueue LocalQueue name)", max_len=63),
        data_cache_size=str(_str(_int_as_str(spec, "dataCacheSize"), "dataCacheSize", QUANTITY,
                                 "a quantity such as 100Gi", max_len=64)),
        extra_args=pod_fields.extra_args(spec),
    )


__all__ = ["DEFAULTS", "GROUP", "KIND", "PLURAL", "VERSION", "PvcPath", "Settings", "SpecError", "UFilePath",
           "parse_spec"]
