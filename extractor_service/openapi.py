"""The OpenAPI 3.1 document served at `/openapi.json` (hand-written: the API is small and stable).

tests/extractor/test_app.py holds it to the code: every route documented and nothing else
(`service_common.openapi.route_drift`), and every field of real responses in its schema.
"""

from __future__ import annotations

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "Image feature extractor",
        "version": "1",
        "description": "Images in, L2-normalised vectors of the served backbone out (EXTRACTOR_MODEL: vgg16 "
        "512-d, equal to the classic Keras pipeline's within 1e-4; resnet50 2048-d; densenet121 1024-d; "
        "efficientnet-lite0 1280-d). /v1/info says which.",
    },
    "paths": {
        "/healthz": {"get": {"summary": "the process is alive",
                             "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "alive")}}},
        "/readyz": {"get": {"summary": "the model is loaded and warmed",
                            "responses": {"200": _json({"$ref": "#/components/schemas/Ready"}, "ready"),
                                          "503": _json(_ERROR, "still loading, or the model failed to load")}}},
        "/v1/info": {"get": {"summary": "model, weights, dimension and fingerprint",
                             "responses": {"200": _json({"$ref": "#/components/schemas/Info"}, "model info"),
                                           "503": _json(_ERROR, "still loading")}}},
        "/v1/extract": {
            "post": {
                "summary": "vectors for one or more images, one result per `image` part, in order",
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": {
                        "type": "object",
                        "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                        "required": ["image"],
                    }}},
                },
                "parameters": [{
                    "name": "Accept", "in": "header", "required": False, "schema": {"type": "string"},
                    "description": "application/octet-stream for N x dim little-endian float32 (failed rows NaN, "
                    "listed in the X-Errors header)",
                }],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Extraction"}, "per-image vectors or errors"),
                    "400": _json(_ERROR, "no `image` part"),
                    "413": _json(_ERROR, "too many parts or body too large"),
                    "415": _json(_ERROR, "not multipart/form-data"),
                    "503": _json(_ERROR, "not ready, overloaded or timed out; retry"),
                },
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text", "content": {"text/plain": {}}}}}},
        "/openapi.json": {"get": {"summary": "this document",
                                  "responses": {"200": {"description": "JSON",
                                                        "content": {"application/json": {}}}}}},
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}},
                "required": ["error"],
            },
            "Health": {"type": "object", "properties": {"status": {"type": "string", "const": "ok"}}},
            "Ready": {"type": "object", "properties": {"status": {"type": "string", "const": "ready"},
                                                       "fingerprint": {"type": "string"}}},
            "Info": {
                "type": "object",
                "properties": {
                    "model": {"type": "string"}, "weights": {"type": "string"}, "dim": {"type": "integer"},
                    "input_size": {"type": "integer"}, "pooling": {"type": "string"},
                    "normalized": {"type": "boolean"}, "precision": {"type": "string"},
                    "device": {"type": "string"}, "fingerprint": {"type": "string"},
                    "runtime": {"type": "string", "description": "tensorflow, jax or openvino (EXTRACTOR_RUNTIME)"},
                    "preprocessing": {"type": "string"},
                    "why": {"type": "string", "description": "how EXTRACTOR_MODEL chose the backbone"},
                },
                "required": ["model", "weights", "dim", "input_size", "pooling", "normalized", "fingerprint"],
            },
            "Extraction": {
                "type": "object",
                "properties": {
                    "fingerprint": {"type": "string"},
                    "dim": {"type": "integer"},
                    "results": {"type": "array", "items": {"oneOf": [
                        {"type": "object", "properties": {"vector": {"type": "array", "items": {"type": "number"}}},
                         "required": ["vector"]},
                        {"type": "object", "properties": {"error": {"type": "object", "properties": {
                            "code": {"type": "string"}, "message": {"type": "string"},
                            "status": {"type": "integer"}}}}, "required": ["error"]},
                    ]}},
                },
                "required": ["fingerprint", "dim", "results"],
            },
        }
    },
}
