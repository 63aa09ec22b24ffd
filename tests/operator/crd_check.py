"""Validate a custom resource against the CRD the way the API server does (for tests).

Structural schema -> JSON Schema for ``jsonschema`` (x-kubernetes-* keys dropped, unknown fields refused as
with ``kubectl --validate=strict``), defaults applied first, then every ``x-kubernetes-validations`` CEL rule
evaluated with cel-python on the defaulted object. Errors are "<field path>: <message>".
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema


def version_schema(crd: dict[str, Any], version: str = "v1alpha1") -> dict[str, Any]:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k not in ("default", "format")}
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _path(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _cel(schema: dict[str, Any], value: Any, where: list[Any], errors: list[str]) -> None:
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", ()):
        program = env.program(env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if not bool(result) or isinstance(result, celpy.CELEvalError):
            field = _path(where) + rule.get("fieldPath", "")
            errors.append(f"{field}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                _cel(sub, value[key], [*where, key], errors)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _cel(schema["items"], item, [*where, i], errors)


def validate(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    schema = version_schema(crd)
    obj = apply_defaults(schema, copy.deepcopy(obj))
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    errors = [f"{_path(list(e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    if not errors:  # the API server runs CEL only on a schema-valid object
        _cel(schema, obj, [], errors)
    return errors
