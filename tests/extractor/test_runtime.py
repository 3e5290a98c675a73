"""EXTRACTOR_RUNTIME: which runtime `auto` picks and why, and OpenVINO's converter kept offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from extractor_service.model import choose_runtime

REPO = Path(__file__).resolve().parents[2]


def test_auto_is_openvino_on_a_cpu_in_fp32():
    assert choose_runtime("auto", "fp32", []) == ("openvino", "auto: CPU, fp32, openvino installed")


@pytest.mark.parametrize("precision, gpus, why", [
    ("fp32", ["/physical_device:GPU:0"], "a GPU is present"),
    ("bf16", [], "precision bf16 (OpenVINO is used for fp32 only)"),
    ("fp16", [], "precision fp16"),
])
def test_auto_keeps_tensorflow_for_gpus_and_mixed_precision(precision, gpus, why):
    runtime, reason = choose_runtime("auto", precision, gpus)
    assert runtime == "tensorflow" and why in reason


def test_auto_falls_back_to_tensorflow_without_openvino(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert choose_runtime("auto", "fp32", []) == (
        "tensorflow", "auto: openvino is not installed (pip install openvino: faster on CPUs)")


def test_an_explicit_runtime_is_kept_and_a_wrong_one_named():
    assert choose_runtime("tensorflow", "fp32", []) == ("tensorflow", "EXTRACTOR_RUNTIME=tensorflow")
    assert choose_runtime("openvino", "fp32", ["gpu"])[0] == "openvino"
    with pytest.raises(ValueError, match="auto, tensorflow or openvino. Received: 'onnx'"):
        choose_runtime("onnx", "fp32", [])


def test_the_in_process_extractor_says_which_runtime_runs_it(small_extractor):
    info = small_extractor.info()
    assert (info["runtime"], info["device"]) == ("openvino", "CPU")
    assert len(small_extractor.batcher._threads) == 1  # one OpenVINO call at a time


def test_converting_a_model_sends_no_usage_data(tmp_path):
    """OpenVINO's converter reports usage to Intel and writes a client id under ~/intel when no consent file
    says no: with the extractor's import, nothing is written there and no socket connects. In a fresh
    process, so that no earlier conversion in this one has set the converter up already."""
    code = """
import socket, sys
calls = []
connect = socket.socket.connect
socket.socket.connect = lambda self, addr: (calls.append(addr), connect(self, addr))[1]
from extractor_service.backbones.vgg16 import VGG16
from extractor_service.model import OpenVINOFeatureModel
import numpy as np
model = OpenVINOFeatureModel(VGG16, VGG16.resolve_weights("hed-vgg16"), 32)
assert model(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 512)
import time; time.sleep(1)  # the reporter sends from a thread
print("connects", calls)
"""
    env = {**os.environ, "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("CI", None)  # the reporter stays quiet in CI on its own: test the user's case
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "connects []" in out.stdout
    assert not (tmp_path / "intel").exists(), sorted(p.name for p in (tmp_path / "intel").iterdir())
