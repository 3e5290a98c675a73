"""Errors of the extractor client; each message says what happened and what to do."""

from __future__ import annotations


class ExtractorUnavailable(Exception):
    """The extractor could not be reached, timed out, or is not ready (HTTP 503)."""


class ExtractorRejected(Exception):
    """The extractor refused the input (HTTP 4xx); carries its status, code and message."""

    def __init__(self, status: int, code: str, message: str):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")
