"""Search service: search a Milvus catalogue of VGG16 image vectors by picture, over HTTP and in a web page.

`create_app()` builds the Flask app (see `search_service.app`); `python -m search_service` serves it with
gunicorn. Configuration comes from the environment (`search_service.config`).
"""

from search_service.app import create_app
from search_service.config import Config

__all__ = ["create_app", "Config"]
