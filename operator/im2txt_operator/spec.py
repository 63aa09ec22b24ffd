"""Im2txtTraining spec -> typed, defaulted, validated Settings.

The API server already applies the CRD's defaults and validations; this module repeats them so that the
operator (and ``render``, which runs offline on plain YAML) never acts on a spec it does not understand, nor
builds a Job the Job API would refuse (a volume subPath with '..', a node selector key that is not a label name,
a toleration with operator Exists and a value, a request above its limit...). Every error names the field and
what is expected. The patterns below are the CRD schema's, character for character (a test keeps them equal).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

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
                         "nodeSelector", "tolerations", "maxRunSeconds", "queueName"})
UFILE_SUFFIX_DEFAULT = ".cn-bj.ufileos.com"
# The domains a training's UFile host may be in unless the cluster admin says otherwise: UCloud's own (regional
# <region>.ufileos.com, internal-<region>.ufileos.com, and the older ufile.ucloud.cn / ufile.ucloud.com.cn).
UFILE_DOMAINS = (".ufileos.com", ".ufile.ucloud.cn", ".ufile.ucloud.com.cn")
MAX_STEPS = 1_000_000_000_000
MAX_NODES = 64
MAX_ID = 2_147_483_647  # the largest uid/gid the Pod API accepts

# Flags the operator sets from the spec; extraArgs may not set them, in full or abbreviated (a flag name that is a
# prefix of one of them is what an argument parser that accepts abbreviations would read as that flag).
RESERVED_FLAGS = ("input_file_pattern", "inception_checkpoint_file", "train_dir", "number_of_steps",
                  "train_inception")


def _prefixes(name: str) -> str:
    """A regex matching every non-empty prefix of `name`: t(r(a(i(n)?)?)?)? (RE2 and Python alike)."""
    return name[0] + "".join("(" + c for c in name[1:]) + ")?" * (len(name) - 1)


# The CRD schema's patterns (API server: Go RE2; here: Python re.fullmatch).
FLAG_PATTERN = r"^--[A-Za-z][A-Za-z0-9_-]*(=.*)?$"
RESERVED_FLAG_PATTERN = "^--(" + "|".join(_prefixes(f) for f in RESERVED_FLAGS) + ")(=|$)"
# (an exponent of at most 3 digits: kube-apiserver v1.36 hung on a Job with cpu 1e3000000000)
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_DNS_SUBDOMAIN_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_NAME_RE = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
# A qualified (label) name: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at
# most 63 characters. RE2 cannot bound the prefix's length and shape at once: two patterns.
QUALIFIED_NAME_PATTERN = rf"^({_DNS_SUBDOMAIN_RE}/)?{_NAME_RE}$"
PREFIX_253_PATTERN = r"^([^/]{1,253}/)?[^/]*$"
# A container resource name: cpu, memory, ephemeral-storage, or an extended resource <domain>/<name> whose
# domain is at most 244 characters ("requests." + the name must still be a qualified name) and not "requests.".
RESOURCE_NAME_PATTERN = rf"^(cpu|memory|ephemeral-storage|{_DNS_SUBDOMAIN_RE}/{_NAME_RE})$"
PREFIX_244_PATTERN = r"^([^/]{1,244}/)?[^/]*$"
MAX_EXTRA_ARGS = 64
MAX_TOLERATIONS = 32
MAX_NODE_SELECTOR = 32
MAX_RESOURCES = 16
GPU_RESOURCE = "nvidia.com/gpu"
OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")

_FILE_NAME = re.compile(r"[^/\s]+")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_SUFFIX = re.compile(r"\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_QUANTITY = re.compile(QUANTITY_PATTERN)
_FLAG = re.compile(FLAG_PATTERN)
_RESERVED_FLAG = re.compile(RESERVED_FLAG_PATTERN)
_LABEL_VALUE_OR_EMPTY = re.compile(LABEL_VALUE_PATTERN)
_QUALIFIED_NAME = re.compile(QUALIFIED_NAME_PATTERN)
_PREFIX_253 = re.compile(PREFIX_253_PATTERN)
_RESOURCE_NAME = re.compile(RESOURCE_NAME_PATTERN)
_PREFIX_244 = re.compile(PREFIX_244_PATTERN)
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_LABEL_NAME_RULE = ("a label name: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most "
                    "63 of A-Z, a-z, 0-9, -_. starting and ending with a letter or digit")
_LABEL_VALUE_RULE = "a label value: at most 63 of A-Z, a-z, 0-9, -_. starting and ending with a letter or digit"


def is_label_name(text: object) -> bool:
    """A qualified name as Kubernetes checks label keys, taint keys and node selector keys."""
    return isinstance(text, str) and bool(_QUALIFIED_NAME.fullmatch(text)) and bool(_PREFIX_253.fullmatch(text))


def is_label_value(text: object) -> bool:
    return isinstance(text, str) and len(text) <= 63 and bool(_LABEL_VALUE_OR_EMPTY.fullmatch(text))


def is_resource_name(text: object) -> bool:
    return (isinstance(text, str) and bool(_RESOURCE_NAME.fullmatch(text)) and bool(_PREFIX_244.fullmatch(text))
            and not text.startswith("requests."))


def reserved_flag(arg: str) -> str | None:
    """The reserved flag that `arg` (--flag or --flag=value) sets or abbreviates, else None."""
    if not _RESERVED_FLAG.search(arg):
        return None
    name = arg[2:].split("=", 1)[0]
    return next(f for f in RESERVED_FLAGS if f.startswith(name))


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY_CONTEXT = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def parse_quantity(value: str | int) -> Decimal:
    """A Kubernetes resource quantity (resource.ParseQuantity's grammar, no '-', exponents of at most 3 digits)
    as an exact number."""
    text = str(value)
    m = _QUANTITY.fullmatch(text)
    if isinstance(value, bool) or not m:
        raise ValueError(f"not a resource quantity: {value!r}")
    number = Decimal(m[1])
    suffix = m[3] or ""
    if suffix in _BINARY_SUFFIXES:
        return _QUANTITY_CONTEXT.multiply(number, Decimal(_BINARY_SUFFIXES[suffix]))
    exponent = _DECIMAL_SUFFIXES[suffix] if suffix in _DECIMAL_SUFFIXES else int(suffix[1:])
    return _QUANTITY_CONTEXT.scaleb(number, exponent)


class SpecError(ValueError):
    """A spec value the operator cannot use; ``field`` is the JSON path, e.g. ``spec.dataPath``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class TensorBoard:
    """spec.tensorboard: a TensorBoard Deployment + Service on the training's output, owned by the training."""

    enabled: bool = False
    interval_seconds: int = 60  # how often a ufile:// output's event files are mirrored


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
    tensorboard: TensorBoard = field(default_factory=TensorBoard)
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


def _quantity(value: object, where: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and len(value) > 64) \
            or not _QUANTITY.fullmatch(str(value)):
        raise SpecError(where, f"expected a resource quantity such as 8, 500m or 32Gi, got {value!r}")
    return value


def _number(value: str | int, where: str) -> Decimal:
    try:
        return parse_quantity(value)
    except (ValueError, ArithmeticError):
        raise SpecError(where, f"expected a resource quantity of a usable size, got {value!r}") from None


def _quantity_map(value: object, where: str) -> dict[str, str | int]:
    if not isinstance(value, Mapping):
        raise SpecError(where, f"expected a map of resource names to quantities, got {value!r}")
    if len(value) > MAX_RESOURCES:
        raise SpecError(where, f"at most {MAX_RESOURCES} resources, got {len(value)}")
    out: dict[str, str | int] = {}
    for name, q in value.items():
        if not is_resource_name(name):
            raise SpecError(where, f"{name!r} is not a container resource name: expected cpu, memory, "
                            "ephemeral-storage or an extended resource <domain>/<name> (domain a DNS subdomain of at "
                            "most 244 characters, name at most 63 of A-Z, a-z, 0-9, -_.)")
        out[name] = _quantity(q, f"{where}.{name}")
    return out


def _resources(spec: Mapping[str, Any]) -> dict[str, dict[str, str | int]]:
    value = spec.get("resources") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.resources", f"expected an object with requests and limits, got {value!r}")
    unknown = set(value) - {"requests", "limits"}
    if unknown:
        raise SpecError(f"spec.resources.{sorted(unknown)[0]}", "unknown field: expected requests or limits")
    out = {k: _quantity_map(v, f"spec.resources.{k}") for k, v in value.items()}
    requests, limits = out.get("requests", {}), out.get("limits", {})
    for name in requests:
        if "/" in name:
            raise SpecError("spec.resources.requests",
                            f"{name!r}: extended resources (<domain>/<name>) go in limits only (their request is "
                            f"always equal to the limit); {GPU_RESOURCE} comes from spec.gpus")
    if GPU_RESOURCE in limits:
        raise SpecError("spec.resources.limits", f"{GPU_RESOURCE} comes from spec.gpus")
    # What the Pod API checks and the schema cannot afford to (CEL on int-or-string quantities is too costly):
    for name, q in limits.items():
        if name in OVERCOMMITTABLE:
            continue
        amount = _number(q, f"spec.resources.limits.{name}")
        if amount != amount.to_integral_value():
            raise SpecError(f"spec.resources.limits.{name}", f"an extended resource is a whole number, got {q!r}")
    for name, q in requests.items():
        if name in limits and _number(q, f"spec.resources.requests.{name}") > _number(
                limits[name], f"spec.resources.limits.{name}"):
            raise SpecError(f"spec.resources.requests.{name}",
                            f"must be at most spec.resources.limits.{name} ({limits[name]!r}), got {q!r}")
    return out


def _node_selector(spec: Mapping[str, Any]) -> dict[str, str]:
    value = spec.get("nodeSelector") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.nodeSelector", f"expected a map of label names to label values, got {value!r}")
    if len(value) > MAX_NODE_SELECTOR:
        raise SpecError("spec.nodeSelector", f"at most {MAX_NODE_SELECTOR} labels, got {len(value)}")
    for key, label in value.items():
        if not is_label_name(key):
            raise SpecError("spec.nodeSelector", f"every key must be {_LABEL_NAME_RULE}, got {key!r}")
        if not is_label_value(label):
            raise SpecError(f"spec.nodeSelector.{key}", f"expected {_LABEL_VALUE_RULE} (or empty), got {label!r}")
    return dict(value)


def _tolerations(spec: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    value = spec.get("tolerations") or []
    if not isinstance(value, list):
        raise SpecError("spec.tolerations", f"expected a list of tolerations, got {value!r}")
    if len(value) > MAX_TOLERATIONS:
        raise SpecError("spec.tolerations", f"at most {MAX_TOLERATIONS} tolerations, got {len(value)}")
    out = []
    for i, t in enumerate(value):
        where = f"spec.tolerations[{i}]"
        if not isinstance(t, Mapping):
            raise SpecError(where, f"expected an object, got {t!r}")
        unknown = set(t) - {"key", "operator", "value", "effect", "tolerationSeconds"}
        if unknown:
            raise SpecError(f"{where}.{sorted(unknown)[0]}", "unknown field")
        key = t.get("key", "")
        if not isinstance(key, str) or len(key) > 317 or (key and not is_label_name(key)):
            raise SpecError(f"{where}.key", f"expected {_LABEL_NAME_RULE} (or empty), got {key!r}")
        if "operator" in t and t["operator"] not in _TOLERATION_OPERATORS:
            raise SpecError(f"{where}.operator", f"expected Exists or Equal, got {t['operator']!r}")
        operator = t.get("operator", "Equal")
        if not is_label_value(t.get("value", "")):
            raise SpecError(f"{where}.value", f"expected {_LABEL_VALUE_RULE} (or empty), got {t['value']!r}")
        if "effect" in t and t["effect"] not in _TOLERATION_EFFECTS:
            raise SpecError(f"{where}.effect",
                            f"expected NoSchedule, PreferNoSchedule or NoExecute, got {t['effect']!r}")
        seconds = t.get("tolerationSeconds")
        if "tolerationSeconds" in t and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            raise SpecError(f"{where}.tolerationSeconds", f"expected an integer, got {seconds!r}")
        if not key and operator != "Exists":
            raise SpecError(f"{where}.operator",
                            "must be Exists when key is empty (a toleration of every taint), got "
                            f"{t.get('operator', 'Equal (the default)')}")
        if operator == "Exists" and t.get("value"):
            raise SpecError(f"{where}.value", f"must be empty when operator is Exists, got {t['value']!r}")
        if "tolerationSeconds" in t and t.get("effect") != "NoExecute":
            raise SpecError(f"{where}.tolerationSeconds",
                            f"only allowed with effect NoExecute, got effect {t.get('effect', '(none)')}")
        out.append(dict(t))
    return tuple(out)


def _extra_args(spec: Mapping[str, Any]) -> tuple[str, ...]:
    value = spec.get("extraArgs", [])
    if not isinstance(value, list):
        raise SpecError("spec.extraArgs", f"expected a list of --flag=value strings, got {value!r}")
    if len(value) > MAX_EXTRA_ARGS:
        raise SpecError("spec.extraArgs", f"at most {MAX_EXTRA_ARGS} flags, got {len(value)}")
    for i, arg in enumerate(value):
        if not isinstance(arg, str) or len(arg) > 1024 or not _FLAG.fullmatch(arg):
            raise SpecError(f"spec.extraArgs[{i}]", f"expected --flag or --flag=value, got {arg!r}")
        reserved = reserved_flag(arg)
        if reserved is None:
            continue
        flag = arg[2:].split("=", 1)[0]
        if flag == reserved:
            raise SpecError(f"spec.extraArgs[{i}]",
                            f"--{flag} is set by the operator from the spec and may not be overridden")
        raise SpecError(f"spec.extraArgs[{i}]",
                        f"--{flag} abbreviates --{reserved}, which the operator sets from the spec; write flags "
                        "in full, and not one that is the start of a flag the operator sets")
    return tuple(value)


def _tensorboard(spec: Mapping[str, Any]) -> TensorBoard:
    value = spec.get("tensorboard") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.tensorboard", f"expected an object with enabled and intervalSeconds, got {value!r}")
    unknown = set(value) - {"enabled", "intervalSeconds"}
    if unknown:
        raise SpecError(f"spec.tensorboard.{sorted(unknown)[0]}", "unknown field: expected enabled or intervalSeconds")
    enabled = value.get("enabled", False)
    if not isinstance(enabled, bool):
        raise SpecError("spec.tensorboard.enabled", f"expected true or false, got {enabled!r}")
    interval = value.get("intervalSeconds", 60)
    if not isinstance(interval, int) or isinstance(interval, bool) or not 10 <= interval <= 3600:
        raise SpecError("spec.tensorboard.intervalSeconds",
                        f"expected an integer between 10 and 3600, got {interval!r}")
    return TensorBoard(enabled=enabled, interval_seconds=interval)


def _ufile(spec: Mapping[str, Any], domains: Sequence[str] | None) -> UFileEndpoints:
    """spec.ufile; the suffixes must be inside ``domains`` (None: no UFile path, so no request goes anywhere)."""
    value = spec.get("ufile") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.ufile", f"expected an object with uploadSuffix and downloadSuffix, got {value!r}")
    unknown = set(value) - {"uploadSuffix", "downloadSuffix"}
    if unknown:
        raise SpecError(f"spec.ufile.{sorted(unknown)[0]}", "unknown field: expected uploadSuffix or downloadSuffix")
    suffixes = {}
    for key in ("uploadSuffix", "downloadSuffix"):
        s = value.get(key, UFILE_SUFFIX_DEFAULT)
        if not isinstance(s, str) or not _SUFFIX.fullmatch(s):
            raise SpecError(f"spec.ufile.{key}", f"expected a host suffix such as .cn-bj.ufileos.com, got {s!r}")
        if domains is not None and not any(s == d or s.endswith(d) for d in domains):
            raise SpecError(f"spec.ufile.{key}", f"{s!r} is not in a UFile domain this cluster allows "
                            f"({', '.join(domains)}): the storage containers send requests signed with the "
                            "training's key pair to that host; the cluster admin sets the list (the operator's "
                            "--ufile-domains)")
        suffixes[key] = s
    return UFileEndpoints(upload_suffix=suffixes["uploadSuffix"], download_suffix=suffixes["downloadSuffix"])


def folder(path: StoragePath) -> str:
    """The path as a folder URL ending in "/", so that one path is inside another exactly when it starts with it."""
    return path.url if path.url.endswith("/") else path.url + "/"


def parse_spec(spec: Mapping[str, Any] | None, ufile_domains: Sequence[str] = UFILE_DOMAINS) -> Settings:
    """Validate and default a training's ``spec``; raises SpecError naming the first bad field. ``ufile_domains``:
    the host suffixes spec.ufile may name (the operator's --ufile-domains; UCloud's public UFile domains by
    default)."""
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
    secret = _str(spec, "credentialsSecret", _DNS_SUBDOMAIN, "a Secret name (DNS subdomain)", max_len=253)
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
        input_file_pattern=_str(spec, "inputFilePattern", _FILE_NAME, "a file name pattern without '/'",
                                max_len=255) or "",
        inception_checkpoint_file=_str(spec, "inceptionCheckpointFile", _FILE_NAME, "a file name without '/'",
                                       max_len=255) or "",
        credentials_secret=secret,
        ufile=_ufile(spec, ufile_domains if uses_ufile else None),
        tensorboard=_tensorboard(spec),
        image=_str(spec, "image", re.compile(r"\S+"), "an image reference without spaces", max_len=512) or "",
        gpus=_int(spec, "gpus", 0, 16),
        num_nodes=_int(spec, "numNodes", 1, MAX_NODES),
        resources=_resources(spec),
        node_selector=_node_selector(spec),
        tolerations=_tolerations(spec),
        max_run_seconds=None if max_run is None else _int(spec, "maxRunSeconds", 1),
        backoff_limit=_int(spec, "backoffLimit", 0, 100),
        checkpoint_interval_seconds=_int(spec, "checkpointIntervalSeconds", 10, 86400),
        run_as_user=_int(spec, "runAsUser", 1, MAX_ID),
        run_as_group=_int(spec, "runAsGroup", 1, MAX_ID),
        suspend=_bool(spec, "suspend"),
        export=_bool(spec, "export"),
        queue_name=_str(spec, "queueName", _LABEL_VALUE, "a label value (Kueue LocalQueue name)", max_len=63),
        data_cache_size=str(_str(_int_as_str(spec, "dataCacheSize"), "dataCacheSize", _QUANTITY,
                                 "a quantity such as 100Gi", max_len=64)),
        extra_args=_extra_args(spec),
    )


__all__ = ["DEFAULTS", "GROUP", "KIND", "PLURAL", "VERSION", "PvcPath", "Settings", "SpecError", "UFilePath",
           "parse_quantity", "parse_spec"]
