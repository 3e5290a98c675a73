"""`python -m search_service [--host H] [--port P]`: serve the app with gunicorn (worker processes, threads).

SEARCH_WORKERS processes with SEARCH_THREADS threads each. Threads suit the work, which waits on the
extractor and Milvus, but Python runs one thread at a time per process: measured under 16 clients on 2
cores, one process topped out at ~0.72 of Milvus's own search rate, two reached ~0.9 (docs/ and
bench/search.py). What the workers share lives in one directory (search_service/shared_state.py), made
here before they start; so do their Prometheus counts (multiprocess mode).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

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


def _child_exit(server, worker) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """A worker ended: drop its live-gauge files (prometheus_client's multiprocess cleanup)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


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
    made = None
    if not config.state_dir:
        made = tempfile.mkdtemp(prefix="search-state-")
        config = config.replace(state_dir=made)
    # Before any process imports prometheus_client: it picks multiprocess mode at import. A directory of
    # our own starts empty, so counts start at zero with the service, as a single process's would.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = Path(config.state_dir) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": config.workers,
        "worker_class": "gthread",
        "threads": config.threads,
        "timeout": int(config.extractor_read_timeout + config.milvus_timeout + 30),
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "search_service",
        "child_exit": _child_exit,
    }
    try:
        StandaloneApplication(config, options).run()
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
