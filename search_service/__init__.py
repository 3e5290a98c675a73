"""Search service: search a Milvus catalogue of VGG16 image vectors by picture, over HTTP and in a web page.

`create_app()` builds the Flask app (see `search_service.app`); `python -m search_service` serves it with
gunicorn. Configuration comes from the environment (`search_service.config`).
"""

from typing import Any

from search_service.config import Config

__all__ = ["create_app", "Config"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: `python -m search_service` must switch prometheus_client
    # to multiprocess mode before the app's modules import it (search_service/__main__.py).
    if name == "create_app":
        from search_service.app import create_app

        return create_app
    raise AttributeError(f"module 'search_service' has no attribute {name!r}")
