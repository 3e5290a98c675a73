"""`python -m extractor_service [--host 127.0.0.1] [--port 8001]`: serve the extractor with gunicorn.

`python -m extractor_service fetch-weights [MODEL ...]` downloads ImageNet weights into the Keras cache
(on a machine with internet; see fetch_weights.py).

One gunicorn worker process holds the model (TensorFlow is imported only there, after the fork); its
gthread threads take concurrent requests, which the dynamic batcher coalesces into model calls. The
backbone and its weights are resolved before gunicorn starts, so a wrong or missing file is a clear error and exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from gunicorn.app.base import BaseApplication

from extractor_service.backbones import ResolvedModel, WeightsError, resolve_model
from extractor_service.config import ExtractorConfig

WORKER_BOOT_ERROR = 3  # gunicorn's arbiter stops the whole server when a worker exits with this code


class ExtractorServer(BaseApplication):
    """gunicorn application: one gthread worker running `create_app(config)`."""

    def __init__(self, config: ExtractorConfig, bind: str, model: ResolvedModel | None = None):
        self.config = config
        self.bind = bind
        self.model = model
        super().__init__()

    def load_config(self) -> None:
        settings = {
            "bind": self.bind,
            "workers": 1,  # one model per process; scale with more containers/replicas
            "worker_class": "gthread",
            "threads": self.config.http_threads,
            "timeout": 300,  # model load and big batches on slow CPUs must not trip the worker watchdog
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": os.environ.get("EXTRACTOR_ACCESS_LOG") or None,
            "errorlog": "-",
            "loglevel": os.environ.get("EXTRACTOR_LOG_LEVEL", "info"),
            "proc_name": "extractor_service",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from extractor_service.app import create_app  # imports TensorFlow lazily, in the worker only
        from extractor_service.extractor import load_extractor

        return create_app(self.config, loader=functools.partial(load_extractor, model=self.model),
                          on_load_error=_exit_worker)


def _exit_worker(exc: BaseException) -> None:
    logging.getLogger("extractor_service").error("model failed to load, stopping: %s", exc)
    sys.stderr.flush()
    os._exit(WORKER_BOOT_ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fetch-weights"]:
        return fetch_weights_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m extractor_service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config = ExtractorConfig.from_env()
        model = resolve_model(config.model, config.weights)
    except (WeightsError, ValueError) as exc:
        print(f"extractor_service: error: {exc}", file=sys.stderr)
        return 2
    ExtractorServer(config, f"{args.host}:{args.port}", model).run()
    return 0


def fetch_weights_main(argv: list[str]) -> int:
    """`fetch-weights [MODEL ...]`: Keras's hash-checked download of ImageNet weights; one-line errors."""
    from extractor_service.fetch_weights import KERAS_FILES, FetchError, fetch

    parser = argparse.ArgumentParser(prog="python -m extractor_service fetch-weights",
                                     description="Download ImageNet weights into the Keras cache (needs internet).")
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"any of {', '.join(KERAS_FILES)} (default: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        for path in fetch(args.models or None):
            print(f"ok {path}")
    except FetchError as exc:
        print(f"extractor_service fetch-weights: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
