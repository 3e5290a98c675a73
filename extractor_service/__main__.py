"""`python -m extractor_service [--host 127.0.0.1] [--port 8001]`: serve the extractor with gunicorn.

One gunicorn worker process holds the model (TensorFlow is imported only there, after the fork); its
gthread threads take concurrent requests, which the dynamic batcher coalesces into model calls. The
weights are resolved before gunicorn starts, so a wrong or missing file is a clear error and exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from gunicorn.app.base import BaseApplication

from extractor_service.config import ExtractorConfig
from extractor_service.weights import WeightsError, resolve_weights

WORKER_BOOT_ERROR = 3  # gunicorn's arbiter stops the whole server when a worker exits with this code


class ExtractorServer(BaseApplication):
    """gunicorn application: one gthread worker running `create_app(config)`."""

    def __init__(self, config: ExtractorConfig, bind: str, weights=None):
        self.config = config
        self.bind = bind
        self.weights = weights
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

        return create_app(self.config, loader=functools.partial(load_extractor, weights=self.weights),
                          on_load_error=_exit_worker)


def _exit_worker(exc: BaseException) -> None:
    logging.getLogger("extractor_service").error("model failed to load, stopping: %s", exc)
    sys.stderr.flush()
    os._exit(WORKER_BOOT_ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extractor_service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config = ExtractorConfig.from_env()
        weights = resolve_weights(config.weights)
    except (WeightsError, ValueError) as exc:
        print(f"extractor_service: error: {exc}", file=sys.stderr)
        return 2
    ExtractorServer(config, f"{args.host}:{args.port}", weights).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
