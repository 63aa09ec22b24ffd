"""Validate a custom resource against its CRD offline, as the API server would on create.

Steps, in the API server's order: apply the schema's defaults, check the OpenAPI v3 schema (converted to
JSON Schema for `jsonschema`), then evaluate every `x-kubernetes-validations` CEL rule (`cel-python`) where
its schema node has a value. Unknown fields are reported as errors (kubectl's default strict field
validation); `x-kubernetes-preserve-unknown-fields` and `metadata` stay open.

Every error starts with the field the API server names in its error causes (`spec.tolerations[0].value: ...`):
a missing required field is named itself (`spec.dataPath: Required value`), an unknown field too
(`spec.numberOfStep: unknown field "spec.numberOfStep"`, as strict field validation says), a CEL rule's error
the rule's node plus its fieldPath. Patterns are matched as Go's regexp would: a final `$` is the end of the text
(Python's `$` also matches before a final newline); CEL `matches` is RE2 already (cel-python uses re2).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

Json = Any


def load_crd(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        crd = yaml.safe_load(f)
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: not a CustomResourceDefinition")
    return crd


def version_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema of `version` (e.g. "v1alpha1") in `crd`."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version}")


def to_json_schema(node: Json, *, is_metadata: bool = False) -> Json:
    """Structural OpenAPI v3 (Kubernetes dialect) -> JSON Schema draft 2020-12."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "format", "description"):
            continue  # format: int64/date-time are not checked by kubectl either; defaults are applied first
        if key == "properties":
            out[key] = {k: to_json_schema(v, is_metadata=(k == "metadata")) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") or key in ("allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        elif key == "pattern" and isinstance(value, str) and value.endswith("$") and not value.endswith("\\$"):
            out[key] = value[:-1] + "\\Z"  # Go's `$` (no multi-line flag) is the end of the text
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    # Unknown fields: the API server prunes them, and kubectl's strict field validation rejects them.
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not is_metadata
    ):
        out["additionalProperties"] = False
    return out


def apply_defaults(schema: Json, value: Json) -> Json:
    """Return `value` with the schema's defaults filled in (what the API server stores)."""
    if isinstance(value, dict) and isinstance(schema, dict):
        result = dict(value)
        for name, sub in (schema.get("properties") or {}).items():
            if name not in result and "default" in sub:
                result[name] = copy.deepcopy(sub["default"])
            if name in result:
                result[name] = apply_defaults(sub, result[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in result:
                if name not in (schema.get("properties") or {}):
                    result[name] = apply_defaults(extra, result[name])
        return result
    if isinstance(value, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _cel_nodes(schema: Json, value: Json, path: str) -> Iterator[tuple[dict[str, Any], Json, str]]:
    """(rule, value, path) for every x-kubernetes-validations rule whose node has a value."""
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        yield rule, value, path
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name in value:
                yield from _cel_nodes(sub, value[name], f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in props:
                    yield from _cel_nodes(extra, item, f"{path}[{name!r}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _cel_nodes(schema["items"], item, f"{path}[{i}]")


_CEL = celpy.Environment()


def cel_errors(schema: Json, value: Json, path: str = "") -> list[str]:
    """Messages of the CEL rules that `value` breaks (`path` names the root, e.g. "" for the object)."""
    errors = []
    for rule, node_value, node_path in _cel_nodes(schema, value, path):
        program = _CEL.program(_CEL.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(node_value)})
        if isinstance(result, celpy.CELEvalError):
            where = node_path.lstrip(".") or "<root>"
            errors.append(f"{where}: CEL rule {rule['rule']!r} could not be evaluated: {result}")
        elif not bool(result):
            where = (node_path + rule.get("fieldPath", "")).lstrip(".")
            errors.append(f"{where or '<root>'}: {rule.get('message') or 'failed rule: ' + rule['rule']}")
    return errors


def field_path(parts: Iterable[str | int]) -> str:
    """`spec.tolerations[0].operator`, as the API server names fields."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "<root>"


def _schema_error(error: jsonschema.ValidationError) -> list[str]:
    """One jsonschema error as the API server words it: the field first, then what is wrong with it."""
    where = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"{field_path([*where, name])}: Required value" for name in missing]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties") or {})
        return [f'{field_path([*where, name])}: unknown field "{field_path([*where, name])}"'
                for name in error.instance if name not in known]
    return [f"{field_path(where)}: {error.message}"]


def validate(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """All the errors the API server would report for `obj` (empty when it would be accepted)."""
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    api_version = obj.get("apiVersion", "")
    if obj.get("kind") != kind or not api_version.startswith(group + "/"):
        return [f"not a {group} {kind}: apiVersion={api_version!r} kind={obj.get('kind')!r}"]
    schema = version_schema(crd, api_version.split("/", 1)[1])
    defaulted = apply_defaults(schema, obj)
    validator = jsonschema.Draft202012Validator(to_json_schema(schema))
    errors = [
        message
        for e in sorted(validator.iter_errors(defaulted), key=lambda e: list(map(str, e.absolute_path)))
        for message in _schema_error(e)
    ]
    if errors:
        return errors  # CEL rules only run on objects that pass the schema, as in the API server
    return cel_errors(schema, defaulted)
