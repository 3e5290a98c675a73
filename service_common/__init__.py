"""Plumbing shared by the services: no model code, and nothing imported here (import the module you need).

- `service_common.settings`: configuration from environment variables (pydantic-settings), for every service.
- `service_common.errors`: the one error envelope `{"error": {"code", "message", ...}}` of both HTTP services,
  `ApiError`, and the JSON handlers every app needs (HTTP errors, 413 body-vs-parts, unexpected exceptions).
- `service_common.openapi`: compare an OpenAPI document with an app's routes and real responses, so the
  hand-written documents cannot drift from the code.
"""
