"""`python -m search_service [--host H] [--port P]`: serve the app with gunicorn (one worker, threads).

One worker process with SEARCH_THREADS threads: the work is I/O (HTTP to the extractor, gRPC to Milvus),
so threads suffice, and one process keeps the Prometheus registry whole without multiprocess mode.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gunicorn.app.base import BaseApplication

from search_service.config import Config


class StandaloneApplication(BaseApplication):
    """gunicorn embedded: options from us, no config file, the app built in the worker."""

    def __init__(self, config: Config, options: dict):
        self.search_config = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Built after the fork, in the worker: gRPC channels and HTTP pools must not cross a fork.
        from search_service.app import create_app

        return create_app(self.search_config)


def main(argv: list[str] | None = None) -> int:
    """Parse --host/--port, read the environment and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m search_service", description="Serve the image search service.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": config.threads,
        "timeout": int(config.extractor_read_timeout + config.milvus_timeout + 30),
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "search_service",
    }
    StandaloneApplication(config, options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
