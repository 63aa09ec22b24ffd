"""The parts of a training's spec that go into its pods: resources, nodeSelector, tolerations and extraArgs.

Each parser checks what the Pod API would refuse (a request above its limit, a toleration with operator Exists and
a value, a flag the operator sets itself...) and raises SpecError naming the field and what is expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from im2txt_operator.field_rules import (
    FLAG,
    GPU_RESOURCE,
    LABEL_NAME_RULE,
    LABEL_VALUE_RULE,
    MAX_EXTRA_ARGS,
    MAX_NODE_SELECTOR,
    MAX_RESOURCES,
    MAX_TOLERATIONS,
    OVERCOMMITTABLE,
    QUANTITY,
    TOLERATION_EFFECTS,
    TOLERATION_OPERATORS,
    SpecError,
    is_label_name,
    is_label_value,
    is_resource_name,
    parse_quantity,
    reserved_flag,
    sub_object,
)


def _quantity(value: object, where: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and len(value) > 64) \
            or not QUANTITY.fullmatch(str(value)):
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


def resources(spec: Mapping[str, Any], parent: str = "spec", gpus_from: str | None = "spec.gpus"
              ) -> dict[str, dict[str, str | int]]:
    """``<parent>.resources``; ``gpus_from``: the field that gives the GPUs (they may not be in limits then)."""
    where = f"{parent}.resources"
    value = sub_object(spec, "resources", ("requests", "limits"), parent)
    out = {k: _quantity_map(v, f"{where}.{k}") for k, v in value.items()}
    requests, limits = out.get("requests", {}), out.get("limits", {})
    for name in requests:
        if "/" in name:
            raise SpecError(f"{where}.requests",
                            f"{name!r}: extended resources (<domain>/<name>) go in limits only (their request is "
                            f"always equal to the limit)" + (f"; {GPU_RESOURCE} comes from {gpus_from}"
                                                               if gpus_from else ""))
    if gpus_from and GPU_RESOURCE in limits:
        raise SpecError(f"{where}.limits", f"{GPU_RESOURCE} comes from {gpus_from}")
    # What the Pod API checks and the schema cannot afford to (CEL on int-or-string quantities is too costly):
    for name, q in limits.items():
        if name in OVERCOMMITTABLE:
            continue
        amount = _number(q, f"{where}.limits.{name}")
        if amount != amount.to_integral_value():
            raise SpecError(f"{where}.limits.{name}", f"an extended resource is a whole number, got {q!r}")
    for name, q in requests.items():
        if name in limits and _number(q, f"{where}.requests.{name}") > _number(
                limits[name], f"{where}.limits.{name}"):
            raise SpecError(f"{where}.requests.{name}",
                            f"must be at most {where}.limits.{name} ({limits[name]!r}), got {q!r}")
    return out


def node_selector(spec: Mapping[str, Any]) -> dict[str, str]:
    value = spec.get("nodeSelector") or {}
    if not isinstance(value, Mapping):
        raise SpecError("spec.nodeSelector", f"expected a map of label names to label values, got {value!r}")
    if len(value) > MAX_NODE_SELECTOR:
        raise SpecError("spec.nodeSelector", f"at most {MAX_NODE_SELECTOR} labels, got {len(value)}")
    for key, label in value.items():
        if not is_label_name(key):
            raise SpecError("spec.nodeSelector", f"every key must be {LABEL_NAME_RULE}, got {key!r}")
        if not is_label_value(label):
            raise SpecError(f"spec.nodeSelector.{key}", f"expected {LABEL_VALUE_RULE} (or empty), got {label!r}")
    return dict(value)


def tolerations(spec: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
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
            raise SpecError(f"{where}.key", f"expected {LABEL_NAME_RULE} (or empty), got {key!r}")
        if "operator" in t and t["operator"] not in TOLERATION_OPERATORS:
            raise SpecError(f"{where}.operator", f"expected Exists or Equal, got {t['operator']!r}")
        operator = t.get("operator", "Equal")
        if not is_label_value(t.get("value", "")):
            raise SpecError(f"{where}.value", f"expected {LABEL_VALUE_RULE} (or empty), got {t['value']!r}")
        if "effect" in t and t["effect"] not in TOLERATION_EFFECTS:
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


def extra_args(spec: Mapping[str, Any]) -> tuple[str, ...]:
    value = spec.get("extraArgs", [])
    if not isinstance(value, list):
        raise SpecError("spec.extraArgs", f"expected a list of --flag=value strings, got {value!r}")
    if len(value) > MAX_EXTRA_ARGS:
        raise SpecError("spec.extraArgs", f"at most {MAX_EXTRA_ARGS} flags, got {len(value)}")
    for i, arg in enumerate(value):
        if not isinstance(arg, str) or len(arg) > 1024 or not FLAG.fullmatch(arg):
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
