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
_FILTER_DOC = ('conditions on meta fields: {"category": "shoes"} (equality), {"category": {"in": [...]}}, '
               '{"price": {"gte": 10, "lt": 100}}, {"and"|"or": [...]}, {"not": {...}}; see README')
# The options every search takes, in a multipart form (text) or a JSON body.
_OPTIONS = {
    "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    "offset": {"type": "integer", "minimum": 0, "maximum": 16284, "default": 0,
               "description": "skip this many best hits (paging; top_k + offset at most 16384)"},
    "min_score": {"type": "number", "minimum": -1, "maximum": 1,
                  "description": "only hits at least this similar (a range search: top_k counts only those)"},
}

OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "Image search service",
        "version": "1.0.0",
        "description": "Reverse image search: features from the extractor service (VGG16 or another backbone), "
                       "stored in Milvus; filters, batches, paging, thresholds and near-duplicate groups.",
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
                                "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                                          "description": "one part, or several (a batch, at most SEARCH_MAX_BATCH)"},
                                **_OPTIONS,
                                "filter": {"type": "string", "description": "JSON text: " + _FILTER_DOC},
                            },
                        }},
                        "application/json": {"schema": {
                            "type": "object",
                            "properties": {
                                "vector": {"type": "array", "items": {"type": "number"}},
                                "vectors": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                                            "description": "a batch of vectors"},
                                "fingerprint": {"type": "string",
                                                "description": "model of the vector; default: the extractor's"},
                                "name": {"type": "string", "description": "search by a stored image"},
                                "names": {"type": "array", "items": {"type": "string"},
                                          "description": "a batch of stored images"},
                                **_OPTIONS,
                                "filter": {"type": "object", "description": _FILTER_DOC},
                            },
                        }},
                    },
                },
                "responses": {
                    "200": _json({"oneOf": [{"$ref": "#/components/schemas/SearchResults"},
                                            {"$ref": "#/components/schemas/BatchResults"}]},
                                 "results, best first (a batch: one entry per query, in order)"),
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
        "/v1/stats": {"get": {"summary": "Catalogue size, fingerprint, model, storage mode and index",
                              "responses": {"200": _json({"$ref": "#/components/schemas/Stats"}, "stats"),
                                            **_errors(503)}}},
        "/v1/duplicates": {"get": {
            "summary": "Groups of near-duplicate catalogue images, a page at a time",
            "parameters": [
                {"name": "threshold", "in": "query", "schema": {"type": "number", "minimum": 0.5, "maximum": 1,
                                                                "default": 0.95}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                            "default": 20}},
                {"name": "after", "in": "query", "schema": {"type": "string"},
                 "description": "the `next` cursor of the previous page"},
            ],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Duplicates"}, "a page of groups"),
                "202": _json({"$ref": "#/components/schemas/Duplicates"},
                             "still finding them: `scanned` of `images`; ask again after Retry-After"),
                **_errors(400, 503),
            },
        }},
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
            "QueryResult": {"type": "object", "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                "error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"}}},
            }},
            "BatchResults": {"type": "object", "required": ["queries", "took_ms"], "properties": {
                "queries": {"type": "array", "items": {"$ref": "#/components/schemas/QueryResult"}},
                "took_ms": {"type": "object"},
                "empty": {"type": "boolean"}, "message": {"type": "string"},
            }},
            "Group": {"type": "object", "properties": {
                "names": {"type": "array", "items": {"type": "string"}}, "size": {"type": "integer"},
                "best_score": {"type": "number"}, "pairs": {"type": "integer"},
                "urls": {"type": "array", "items": {"type": "string"}},
            }},
            "Duplicates": {"type": "object", "required": ["threshold", "status"], "properties": {
                "threshold": {"type": "number"}, "status": {"type": "string", "enum": ["computing", "done"]},
                "groups": {"type": "array", "items": {"$ref": "#/components/schemas/Group"}},
                "next": {"type": ["string", "null"], "description": "cursor of the next page (null: last page)"},
                "total_groups": {"type": "integer"}, "images": {"type": "integer"},
                "scanned": {"type": "integer"}, "empty": {"type": "boolean"}, "message": {"type": "string"},
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
                "scalar_fields": {"type": "object", "description": "fields declared for fast filters: name -> type"},
                "mode": {"type": ["string", "null"], "enum": ["float", "binary", None],
                         "description": "how the vectors are stored, chosen at import (`loader import --index`): "
                                        "`float`, or `binary`: learned binary codes searched by Hamming distance, "
                                        "their candidates re-ranked by exact cosine with the float vectors"},
                "index": {"type": "object", "properties": {
                    "type": {"type": "string", "description": "HNSW, IVF_FLAT, FLAT; compact modes: IVF_SQ8, "
                                                              "IVF_PQ, DISKANN, BIN_ITQ256, BIN_ITQ512 (docs/SCALING.md)"},
                    "build_params": {"type": "object"},
                    "search_params": {"type": "object", "description": (
                        "the index's search parameters with SEARCH_PARAMS applied (ef, nprobe, search_list); "
                        "`candidates` (IVF_SQ8, IVF_PQ, BIN_ITQ*): coarse hits per wanted result that are "
                        "re-ranked by exact cosine (default 5 for IVF_SQ8, 20 for the others; 0 turns it off "
                        "for IVF_SQ8 / IVF_PQ); set it with SEARCH_PARAMS, e.g. {\"candidates\": 40}")},
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
