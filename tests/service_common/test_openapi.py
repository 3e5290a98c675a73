"""service_common.openapi: route drift and undocumented response fields, on a tiny app and document."""

from __future__ import annotations

from flask import Blueprint, Flask

from service_common.openapi import openapi_path, route_drift, routed_operations, undocumented_fields


def _app() -> Flask:
    app = Flask(__name__)  # has a static route, which is not API
    bp = Blueprint("bp", __name__, url_prefix="/v1")

    @bp.get("/items/<path:name>")
    def get_item(name):
        return {}

    @bp.delete("/items/<path:name>")
    def delete_item(name):
        return {}

    @app.get("/healthz")
    def healthz():
        return {}

    app.register_blueprint(bp)
    return app


def _op(summary="s", params=None, schema=None):
    op = {"summary": summary, "responses": {"200": {"description": "ok", "content": {"application/json": {
        "schema": schema or {"type": "object"}}}}}}
    if params is not None:
        op["parameters"] = params
    return op


NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]


def test_rules_become_openapi_paths():
    assert openapi_path("/v1/images/<path:name>/file") == "/v1/images/{name}/file"
    assert openapi_path("/a/<int:id>/<b>") == "/a/{id}/{b}"
    assert routed_operations(_app()) == {("/v1/items/{name}", "get"), ("/v1/items/{name}", "delete"),
                                         ("/healthz", "get")}


def test_no_drift_when_every_route_and_only_those_are_documented():
    spec = {"paths": {"/v1/items/{name}": {"get": _op(params=NAME), "delete": _op(params=NAME)},
                      "/healthz": {"get": _op()}}}
    assert route_drift(_app(), spec) == []


def test_drift_is_reported_both_ways_with_missing_parameters():
    spec = {"paths": {"/v1/items/{name}": {"get": _op(), "put": _op(params=NAME)},
                      "/gone": {"get": _op(summary="")}}}
    assert route_drift(_app(), spec) == [
        "GET /healthz is routed but not documented",
        "DELETE /v1/items/{name} is routed but not documented",
        "GET /gone is documented but not routed",
        "PUT /v1/items/{name} is documented but not routed",
        "GET /gone has no summary or no responses",
        "GET /v1/items/{name} does not declare its path parameter 'name'",
    ]


def test_undocumented_fields_follow_refs_arrays_and_alternatives():
    spec = {
        "paths": {"/x": {"get": _op(schema={"$ref": "#/components/schemas/X"})}},
        "components": {"schemas": {
            "X": {"type": "object", "properties": {
                "a": {"type": "integer"}, "free": {"type": "object"},
                "list": {"type": "array", "items": {"oneOf": [
                    {"type": "object", "properties": {"v": {"type": "number"}}},
                    {"type": "object", "properties": {"e": {"type": "string"}}}]}},
                "open": {"type": "object", "properties": {"k": {}}, "additionalProperties": True},
            }},
        }},
    }
    body = {"a": 1, "free": {"anything": 1}, "list": [{"v": 1}, {"e": "x"}, {"w": 2}], "open": {"z": 1}}
    assert undocumented_fields(spec, "/x", "get", 200, body) == ["list[2].w"]
    assert undocumented_fields(spec, "/x", "get", 200, {**body, "list": [], "new": 1}) == ["new"]
    assert undocumented_fields(spec, "/x", "get", 404, {}) == ["GET /x: status 404 is not documented"]
