"""The OpenAPI 3.1 document served at `/openapi.json` (hand-written: the API is small and stable).

tests/search/test_openapi.py holds it to the code: every route documented and nothing else
(`service_common.openapi.route_drift`), and every field of real responses in its schema.
"""

from __future__ import annotations

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "bad input; the message says what to fix",
        401: "missing or wrong bearer token (when API_TOKEN is set)",
        404: "no such image",
        409: "model mismatch: the extractor's fingerprint differs from the collection's",
        413: "upload too large",
        415: "unsupported content type or image format",
        422: "the extractor could not decode the image (its message is passed through)",
        503: "Milvus or the extractor is unavailable; retry after the Retry-After header",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "image name, a relative path such as cats/1.jpg"}

OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "Image search service",
        "version": "1.0.0",
        "description": "Reverse image search: VGG16 features from the extractor service, stored in Milvus.",
    },
    "paths": {
        "/v1/search": {
            "post": {
                "summary": "Search by image, vector or stored image name",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": {
                            "type": "object", "required": ["image"],
                            "properties": {
                                "image": {"type": "string", "format": "binary"},
                                "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                                "min_score": {"type": "number", "minimum": -1, "maximum": 1},
                            },
                        }},
                        "application/json": {"schema": {
                            "type": "object",
                            "properties": {
                                "vector": {"type": "array", "items": {"type": "number"}},
                                "fingerprint": {"type": "string",
                                                "description": "model of the vector; default: the extractor's"},
                                "name": {"type": "string", "description": "search by a stored image"},
                                "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                                "min_score": {"type": "number", "minimum": -1, "maximum": 1},
                            },
                        }},
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/SearchResults"}, "results, best first"),
                    **_errors(400, 404, 409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/images": {
            "post": {
                "summary": "Add or replace an image (stored under IMAGE_ROOT, extracted, upserted)",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "description": "relative path; default: the upload's file name"},
                        "meta": {"type": "string", "description": "JSON object stored with the image"},
                    },
                }}}},
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Stored"}, "added"),
                    "200": _json({"$ref": "#/components/schemas/Stored"}, "replaced"),
                    **_errors(400, 401, 409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/images/{name}": {
            "get": {
                "summary": "Stored metadata of one image",
                "parameters": [_NAME],
                "responses": {"200": _json({"$ref": "#/components/schemas/Image"}, "the image"),
                              **_errors(404, 503)},
            },
            "delete": {
                "summary": "Remove an image and its file",
                "security": [{"bearer": []}],
                "parameters": [_NAME],
                "responses": {"200": _json({"$ref": "#/components/schemas/Deleted"}, "deleted"),
                              **_errors(401, 404, 503)},
            },
        },
        "/v1/images/{name}/file": {
            "get": {
                "summary": "The image file",
                "parameters": [_NAME],
                "responses": {"200": {"description": "the file", "content": {"image/*": {}}}, **_errors(404)},
            }
        },
        "/v1/stats": {"get": {"summary": "Catalogue size, fingerprint, model and index",
                              "responses": {"200": _json({"$ref": "#/components/schemas/Stats"}, "stats"),
                                            **_errors(503)}}},
        "/healthz": {"get": {"summary": "Liveness",
                             "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "alive")}}},
        "/readyz": {"get": {"summary": "Readiness: Milvus, collection loaded, extractor ready, same model",
                            "responses": {"200": _json({"$ref": "#/components/schemas/Ready"}, "ready"),
                                          "503": _json({"$ref": "#/components/schemas/Ready"},
                                                       "not ready; `message` says why")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition",
                                                   "content": {"text/plain": {}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {}}}}}},
        "/": {"get": {"summary": "The search web page (HTML; its script and style are served from this origin)",
                      "responses": {"200": {"description": "the page", "content": {"text/html": {}}}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "needed for writes when API_TOKEN is set"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    # Only on 409s: the two sides that do not match.
                    "collection_fingerprint": {"type": "string"}, "extractor_fingerprint": {"type": "string"},
                    "collection_dim": {"type": ["integer", "null"]}, "extractor_dim": {"type": "integer"},
                },
            }}},
            "Hit": {"type": "object", "properties": {
                "name": {"type": "string"}, "score": {"type": "number", "description": "cosine similarity"},
                "url": {"type": "string"}, "meta": {"type": "object"},
            }},
            "SearchResults": {"type": "object", "required": ["results", "took_ms"], "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                "took_ms": {"type": "object", "properties": {
                    "extract": {"type": "number"}, "search": {"type": "number"}, "total": {"type": "number"},
                }},
                "empty": {"type": "boolean", "description": "true when the catalogue holds no images"},
                "message": {"type": "string"},
            }},
            "Stored": {"type": "object", "properties": {
                "name": {"type": "string"}, "url": {"type": "string"}, "meta": {"type": "object"},
                "replaced": {"type": "boolean"}, "fingerprint": {"type": "string"},
            }},
            "Image": {"type": "object", "required": ["name", "meta", "url", "file"], "properties": {
                "name": {"type": "string"}, "meta": {"type": "object"}, "url": {"type": "string"},
                "file": {"type": "boolean", "description": "whether the file is under IMAGE_ROOT"},
            }},
            "Deleted": {"type": "object", "properties": {
                "name": {"type": "string"}, "deleted": {"type": "boolean"},
                "file_removed": {"type": "boolean", "description": "whether a file was removed too"},
            }},
            "Stats": {"type": "object", "required": ["collection", "exists", "count"], "properties": {
                "collection": {"type": "string"},
                "exists": {"type": "boolean", "description": "false until the first image is added"},
                "count": {"type": "integer"},
                "fingerprint": {"type": ["string", "null"], "description": "of the model that built it"},
                "model": {"type": ["string", "null"],
                          "description": "the backbone that built it (the fingerprint without its hash)"},
                "dim": {"type": ["integer", "null"]},
                "index": {"type": "object", "properties": {
                    "type": {"type": "string"}, "build_params": {"type": "object"},
                    "search_params": {"type": "object"},
                }},
                "message": {"type": "string", "description": "how to fill an empty catalogue"},
            }},
            "Health": {"type": "object", "properties": {"status": {"type": "string", "const": "ok"}}},
            "Ready": {"type": "object", "required": ["ready", "checks"], "properties": {
                "ready": {"type": "boolean"},
                "checks": {"type": "object", "description": "milvus, collection, extractor, fingerprint",
                           "additionalProperties": {"type": "object",
                                                    "properties": {"ok": {"type": "boolean"}},
                                                    "additionalProperties": True}},
                "message": {"type": "string", "description": "what is wrong (when not ready)"},
            }},
        },
    },
}
