"""ExtractorConfig: defaults, EXTRACTOR_* parsing, and errors that echo the bad value."""

from __future__ import annotations

import pytest

from extractor_service.config import ExtractorConfig


def test_defaults_match_the_contract():
    c = ExtractorConfig.from_env({})
    assert (c.weights, c.input_size, c.precision, c.runtime) == ("auto", 224, "fp32", "auto")
    assert (c.max_file_bytes, c.max_pixels) == (20_000_000, 40_000_000)
    assert c.batch_size_for("CPU") == 8 and c.batch_size_for("GPU") == 64
    assert c.model_streams_for("CPU") == 2 and c.model_streams_for("GPU") == 1


def test_model_streams_as_configured_except_under_openvino():
    config = ExtractorConfig.from_env({"EXTRACTOR_MODEL_STREAMS": "3"})
    assert config.model_streams_for("GPU") == 3 and config.model_streams_for("CPU", "tensorflow") == 3
    # the runtime the model runs on, not the setting (auto picks OpenVINO on CPUs): one call at a time
    assert config.model_streams_for("CPU", "openvino") == 1
    assert ExtractorConfig.from_env({}).model_streams_for("CPU", "openvino") == 1


def test_environment_is_parsed_and_overrides_win():
    env = {"EXTRACTOR_WEIGHTS": "hed-vgg16", "EXTRACTOR_INPUT_SIZE": "64", "EXTRACTOR_MAX_WAIT_MS": "2.5",
           "EXTRACTOR_MAX_BATCH_SIZE": "16", "EXTRACTOR_PRECISION": "bf16", "EXTRACTOR_MAX_PARTS": " "}
    c = ExtractorConfig.from_env(env, max_parts=3)
    assert (c.weights, c.input_size, c.max_wait_ms, c.precision, c.max_parts) == ("hed-vgg16", 64, 2.5, "bf16", 3)
    assert c.batch_size_for("CPU") == 16 and c.batch_size_for("GPU") == 16


@pytest.mark.parametrize("env, match", [
    ({"EXTRACTOR_INPUT_SIZE": "big"}, "EXTRACTOR_INPUT_SIZE must be a whole number. Received: 'big'"),
    ({"EXTRACTOR_INPUT_SIZE": "16"}, "at least 32"),
    ({"EXTRACTOR_PRECISION": "int8"}, "fp32, bf16 or fp16. Received: 'int8'"),
    ({"EXTRACTOR_RUNTIME": "onnx"}, "tensorflow or openvino"),
    ({"EXTRACTOR_MAX_PARTS": "0"}, "EXTRACTOR_MAX_PARTS must be at least 1"),
    ({"EXTRACTOR_MAX_BATCH_SIZE": "-1"}, "EXTRACTOR_MAX_BATCH_SIZE must be >= 0"),
    ({"EXTRACTOR_MODEL_STREAMS": "-1"}, "EXTRACTOR_MODEL_STREAMS must be >= 0"),
])
def test_bad_values_are_named(env, match):
    with pytest.raises(ValueError, match=match):
        ExtractorConfig.from_env(env)
