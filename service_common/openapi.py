"""Keep a hand-written OpenAPI document honest: compare it with the app's routes and with real responses.

The documents are written by hand (the APIs are small, and request bodies and responses need prose), so
nothing ties them to the code by construction. These checks do, from the tests of each service:

- `route_drift(app, spec)`: every route of `app.url_map` is documented, nothing is documented that is not
  routed (path and method; HEAD, OPTIONS and static files aside), and every `{param}` is declared;
- `undocumented_fields(spec, path, method, status, body)`: the fields of a real response body that the
  documented schema of that response lacks (and a status that is not documented at all).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
_IMPLICIT = {"HEAD", "OPTIONS"}  # added by Flask to every GET route / every route


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: `/v1/images/<path:name>/file` -> `/v1/images/{name}/file`."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def routed_operations(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every route of `app`, static files aside."""
    ops = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        for method in (rule.methods or set()) - _IMPLICIT:
            ops.add((openapi_path(rule.rule), method.lower()))
    return ops


def documented_operations(spec: dict) -> set[tuple[str, str]]:
    """(path, method) of every operation in the document."""
    return {(path, m) for path, item in spec.get("paths", {}).items() for m in item if m in HTTP_METHODS}


def route_drift(app: Flask, spec: dict) -> list[str]:
    """What differs between the routes of `app` and the paths of `spec`, one line each; [] when none."""
    routed, documented = routed_operations(app), documented_operations(spec)
    problems = [f"{m.upper()} {p} is routed but not documented" for p, m in sorted(routed - documented)]
    problems += [f"{m.upper()} {p} is documented but not routed" for p, m in sorted(documented - routed)]
    for path, method in sorted(documented):
        op = spec["paths"][path][method]
        declared = {p["name"] for p in op.get("parameters", []) + spec["paths"][path].get("parameters", [])
                    if p.get("in") == "path"}
        for name in re.findall(r"{([^{}]+)}", path):
            if name not in declared:
                problems.append(f"{method.upper()} {path} does not declare its path parameter {name!r}")
        if not op.get("summary") or not op.get("responses"):
            problems.append(f"{method.upper()} {path} has no summary or no responses")
    return problems


def resolve(spec: dict, schema: dict) -> dict:
    """`schema` with a `$ref` to `#/components/...` followed (repeatedly)."""
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def response_schema(spec: dict, path: str, method: str, status: int) -> dict | None:
    """The JSON schema documented for one response, or None when that status is not documented."""
    responses = spec["paths"][path][method]["responses"]
    response = responses.get(str(status))
    if response is None:
        return None
    return response.get("content", {}).get("application/json", {}).get("schema", {})


def undocumented_fields(spec: dict, path: str, method: str, status: int, body: Any) -> list[str]:
    """The fields of a real response `body` that the documented schema lacks, as JSON paths ("stats.model");
    a response status that is not documented is reported too. [] when the document covers the body."""
    schema = response_schema(spec, path, method, status)
    if schema is None:
        return [f"{method.upper()} {path}: status {status} is not documented"]
    return _missing(spec, schema, body, "")


def _missing(spec: dict, schema: dict, value: Any, where: str) -> list[str]:
    schema = resolve(spec, schema)
    for key in ("oneOf", "anyOf"):
        if key in schema:  # documented when one alternative covers it
            found = [_missing(spec, alt, value, where) for alt in schema[key]]
            return min(found, key=len)
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        out = []
        for name, item in value.items():
            here = f"{where}.{name}" if where else name
            if name in props:
                out += _missing(spec, props[name], item, here)
            elif not schema.get("additionalProperties"):
                out.append(here)
        return out
    if isinstance(value, list) and "items" in schema:
        return [m for i, item in enumerate(value) for m in _missing(spec, schema["items"], item, f"{where}[{i}]")]
    return []  # a free-form object or a scalar: nothing more to check
