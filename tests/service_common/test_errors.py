"""service_common.errors: the one error envelope and the handlers both services share, on a tiny app."""

from __future__ import annotations

import io
import logging

import pytest
from flask import Flask, request

from service_common.errors import ApiError, Wording, error_response, register_json_errors, snake

WORDING = Wording(body_too_large=("too_big", "over {limit} bytes"), too_many_parts=(None, "too many parts"),
                  internal=("oops", "something broke; see the log"))
LIMIT = 1000


@pytest.fixture
def client():
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=LIMIT, MAX_FORM_PARTS=3)
    register_json_errors(app, WORDING)

    @app.post("/upload")
    def upload():
        return {"parts": len(request.files.getlist("f")) + len(request.form)}

    @app.get("/refuse")
    def refuse():
        raise ApiError(401, "unauthorized", "say the word", {"WWW-Authenticate": "Bearer"}, hint="please")

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail /srv/app.py")

    return app.test_client()


def test_api_error_is_the_envelope_with_headers_and_extra_fields(client):
    resp = client.get("/refuse")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.get_json() == {"error": {"code": "unauthorized", "message": "say the word", "hint": "please"}}


def test_error_response_outside_a_handler():
    with Flask(__name__).test_request_context():
        resp = error_response(409, "conflict", "no", {"Retry-After": "5"}, a=1)
    assert resp.status_code == 409 and resp.headers["Retry-After"] == "5"
    assert resp.get_json() == {"error": {"code": "conflict", "message": "no", "a": 1}}


def test_http_errors_are_json_with_their_status_and_allow(client):
    nf = client.get("/nope")
    assert nf.status_code == 404 and nf.get_json()["error"]["code"] == "not_found"
    na = client.get("/upload")
    assert na.status_code == 405 and na.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in na.headers["Allow"] and na.mimetype == "application/json"


def test_413_says_whether_the_body_or_the_part_count_was_too_much(client):
    big = client.post("/upload", data={"f": (io.BytesIO(b"x" * (LIMIT + 1)), "a.jpg")},
                      content_type="multipart/form-data")
    assert big.status_code == 413
    assert big.get_json()["error"] == {"code": "too_big", "message": f"over {LIMIT} bytes"}
    many = client.post("/upload", data={f"p{i}": "v" for i in range(6)}, content_type="multipart/form-data")
    assert many.status_code == 413 and many.request.content_length < LIMIT
    assert many.get_json()["error"] == {"code": "request_entity_too_large", "message": "too many parts"}
    assert client.post("/upload", data={"f": (io.BytesIO(b"ok"), "a.jpg")},
                       content_type="multipart/form-data").get_json() == {"parts": 1}


def test_unexpected_errors_are_500_without_details_but_logged(client, caplog):
    with caplog.at_level(logging.ERROR):
        resp = client.get("/boom")
    assert resp.status_code == 500
    assert resp.get_json() == {"error": {"code": "oops", "message": "something broke; see the log"}}
    assert "secret" not in resp.get_data(as_text=True)
    assert "GET /boom" in caplog.text and "secret detail" in caplog.text  # the trace is in the log


@pytest.mark.parametrize("name, code", [("Method Not Allowed", "method_not_allowed"),
                                        ("Request Entity Too Large", "request_entity_too_large"),
                                        ("I'm a teapot", "i_m_a_teapot")])
def test_snake(name, code):
    assert snake(name) == code
