"""The GPU driver (bench/_gpu_extract.py) and its modules bench/_gpu_*.py import without JAX or a GPU:
options, the path its HTTP client processes run, the summary of an empty run. No TensorFlow, no JAX."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_driver():
    spec = importlib.util.spec_from_file_location("bench_gpu_extract", BENCH / "_gpu_extract.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts the repository and bench/ on sys.path, as when run as a script
    return module


driver = _load_driver()


def test_quick_options():
    args = driver.parse_args(["--quick", "--allow-cpu"])
    assert (args.input_size, args.sizes, args.images, args.check_224) == (64, "1,4", 48, True)
    assert args.sections == "info,decode,vgg16,tf32,gpudecode,http,others,http2"


def test_http_clients_run_the_entry_point():
    import _gpu_http

    assert _gpu_http.DRIVER == BENCH / "_gpu_extract.py" and _gpu_http.DRIVER.is_file()


def test_budget_and_results_are_shared_through_gpu_run():
    import _gpu_run

    assert driver.R is _gpu_run.R
    assert sys.modules["_gpu_sections"].time_left is _gpu_run.time_left  # reads _gpu_run.BUDGET_S


def test_summary_of_an_empty_run(capsys):
    driver.print_summary({"meta": {}})
    assert "SUMMARY gpu_extract" in capsys.readouterr().out
