"""The rules Kubernetes applies to the fields a training's pods carry, as the CRD schema spells them.

The patterns are the CRD's, character for character (tests/operator/test_crd.py keeps them equal): the API server
checks them with Go RE2, the operator (and ``render``, offline) with Python's ``re.fullmatch``, so neither builds a
Job the Job API would refuse.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

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

FILE_NAME = re.compile(r"[^/\s]+")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
HOST_SUFFIX = re.compile(r"\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
QUANTITY = re.compile(QUANTITY_PATTERN)
FLAG = re.compile(FLAG_PATTERN)
_RESERVED_FLAG = re.compile(RESERVED_FLAG_PATTERN)
_LABEL_VALUE_OR_EMPTY = re.compile(LABEL_VALUE_PATTERN)
_QUALIFIED_NAME = re.compile(QUALIFIED_NAME_PATTERN)
_PREFIX_253 = re.compile(PREFIX_253_PATTERN)
_RESOURCE_NAME = re.compile(RESOURCE_NAME_PATTERN)
_PREFIX_244 = re.compile(PREFIX_244_PATTERN)
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
LABEL_NAME_RULE = ("a label name: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most "
                    "63 of A-Z, a-z, 0-9, -_. starting and ending with a letter or digit")
LABEL_VALUE_RULE = "a label value: at most 63 of A-Z, a-z, 0-9, -_. starting and ending with a letter or digit"


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
    m = QUANTITY.fullmatch(text)
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


def _listing(fields: tuple[str, ...], word: str) -> str:
    return f"{', '.join(fields[:-1])} {word} {fields[-1]}" if len(fields) > 1 else fields[0]


def sub_object(spec: Mapping[str, Any], key: str, fields: tuple[str, ...], parent: str = "spec") -> Mapping[str, Any]:
    """``<parent>.<key>``, an object with only these fields ({} when absent)."""
    where = f"{parent}.{key}"
    value = spec.get(key) or {}
    if not isinstance(value, Mapping):
        raise SpecError(where, f"expected an object with {_listing(fields, 'and')}, got {value!r}")
    unknown = set(value) - set(fields)
    if unknown:
        raise SpecError(f"{where}.{sorted(unknown)[0]}", f"unknown field: expected {_listing(fields, 'or')}")
    return value
