"""config.py and inputs.py: environment parsing and request validation."""

from __future__ import annotations

import pytest

from search_service.config import Config
from search_service.errors import ApiError
from search_service.inputs import parse_meta, parse_min_score, parse_top_k, parse_vector


def test_config_defaults_match_the_contract():
    cfg = Config.from_env({})
    assert cfg.milvus_uri == "http://127.0.0.1:19530"
    assert cfg.collection == "images"
    assert cfg.extractor_url == "http://127.0.0.1:8001"
    assert cfg.image_root == "./data/images"
    assert cfg.api_token == ""


def test_config_reads_the_environment():
    cfg = Config.from_env({"MILVUS_URI": "http://m:1", "COLLECTION": "c", "EXTRACTOR_URL": "http://a,http://b",
                           "IMAGE_ROOT": "/img", "API_TOKEN": "s3", "MAX_UPLOAD_BYTES": "123",
                           "SEARCH_PARAMS": '{"ef": 128}', "GUARD_TTL": "0.5", "MILVUS_TOKEN": ""})
    assert (cfg.milvus_uri, cfg.collection, cfg.image_root, cfg.api_token) == ("http://m:1", "c", "/img", "s3")
    assert cfg.max_upload_bytes == 123 and cfg.search_params == {"ef": 128} and cfg.guard_ttl == 0.5


@pytest.mark.parametrize("env, words", [({"MAX_UPLOAD_BYTES": "lots"},
                                         "MAX_UPLOAD_BYTES must be a whole number. Received: 'lots'"),
                                        ({"SEARCH_PARAMS": "[1]"}, "SEARCH_PARAMS"),
                                        ({"GUARD_TTL": "x"}, "GUARD_TTL")])
def test_config_errors_name_the_variable(env, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        Config.from_env(env)


@pytest.mark.parametrize("raw, want", [(None, 10), ("", 10), ("1", 1), (100, 100), ("7", 7), (5.0, 5)])
def test_top_k_ok(raw, want):
    assert parse_top_k(raw) == want


@pytest.mark.parametrize("raw", ["0", "101", -1, "abc", 2.5, True, [3]])
def test_top_k_bad(raw):
    with pytest.raises(ApiError) as err:
        parse_top_k(raw)
    assert err.value.status == 400 and "top_k" in err.value.message


def test_min_score():
    assert parse_min_score(None) is None
    assert parse_min_score("0.5") == 0.5
    for bad in ("2", "-1.5", "x", True):
        with pytest.raises(ApiError, match="min_score"):
            parse_min_score(bad)


@pytest.mark.parametrize("raw", [[], "1,2", [1, "2"], [1, None], [float("nan")], [0, 0], [True, 1], {"a": 1}])
def test_vector_bad(raw):
    with pytest.raises(ApiError) as err:
        parse_vector(raw)
    assert err.value.code == "bad_vector"


def test_meta():
    assert parse_meta(None) == {} and parse_meta(" ") == {}
    assert parse_meta('{"a": [1, 2]}') == {"a": [1, 2]}
    for bad in ("[1]", "{bad", '"x"', '{"x": "' + "y" * 20000 + '"}'):
        with pytest.raises(ApiError, match="meta"):
            parse_meta(bad)
