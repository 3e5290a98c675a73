"""The app factory: `create_app(config=None, catalog=None, extractor=None)`."""

from __future__ import annotations

import logging

from flask import Flask

from catalog import Catalog
from extractor_client import ExtractorClient
from search_service.coalescing import SearchCoalescer
from search_service.config import Config
from service_common.json import OrjsonProvider
from search_service.errors import register_error_handlers
from search_service.duplicates import DuplicateFinder
from search_service.files import ImageFiles
from search_service.guard import ModelGuard
from search_service.metrics import Metrics
from search_service.ports import CatalogPort, ExtractorPort
from search_service.services import Services
from search_service.shared_state import SharedDir

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, catalog: CatalogPort | None = None,
               extractor: ExtractorPort | None = None) -> Flask:
    """Build the search service app.

    `config` defaults to the environment (see search_service.config). The Milvus catalogue and the
    extractor client are created here once unless passed in: anything that fits `search_service.ports`
    will do (tests pass in-memory fakes). Neither real client connects until first used, so the service
    starts even while its dependencies are down. A passed-in extractor also answers the health checks.
    """
    config = config or Config.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=config.max_upload_bytes, SEARCH=config, JSON_SORT_KEYS=False)
    app.json = OrjsonProvider(app)  # fast JSON; keys keep their order ("results" first, as documented)

    # Long-lived resources, one set per app.
    if catalog is None:
        catalog = Catalog(config.milvus_uri, config.milvus_token, config.collection, config.milvus_timeout)
    probe: ExtractorPort
    if extractor is None:
        extractor = ExtractorClient(config.extractor_url, config.extractor_connect_timeout,
                                    config.extractor_read_timeout, config.extractor_retries,
                                    pool_size=max(4, config.threads))
        # Health checks must answer quickly even when the extractor is slow.
        probe = ExtractorClient(config.extractor_url, config.extractor_connect_timeout, read_timeout=3.0,
                                retries=0, pool_size=2)
    else:
        probe = extractor
    metrics = Metrics()
    # Shared with the other workers of the same service (python -m search_service sets the directory);
    # an app built on its own shares with nobody.
    shared = SharedDir(config.state_dir) if config.state_dir else SharedDir.temporary()
    app.extensions["search_service"] = Services(
        config=config, catalog=catalog, extractor=extractor, probe=probe,
        guard=ModelGuard(catalog, probe, ttl=config.guard_ttl), files=ImageFiles(config.image_root),
        metrics=metrics,
        shared=shared,
        duplicates=DuplicateFinder(catalog, config.duplicates_neighbours, ttl=config.duplicates_ttl_s,
                                   shared=shared),
        searches=SearchCoalescer(catalog.search, max_in_flight=config.milvus_searches,
                                 on_call=metrics.queries_per_call.observe),
    )

    # JSON errors, metrics hooks, then the blueprints.
    register_error_handlers(app)
    metrics.install(app)
    from search_service import api, health, web

    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(web.bp)
    log.info("search service: collection %s on %s, extractor %s, images in %s",
             config.collection, config.milvus_uri, config.extractor_url, config.image_root)
    return app
