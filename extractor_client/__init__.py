"""HTTP client of the extractor service, shared by the loader and the search service (no TensorFlow).

- `ExtractorClient`: one or more replicas, pooled connections, timeouts, bounded retries.
- `ExtractorUnavailable` (unreachable, timed out, 503) and `ExtractorRejected` (the extractor refused an image).
"""

from extractor_client.client import ExtractBatch, Extraction, ExtractorClient
from extractor_client.errors import ExtractorRejected, ExtractorUnavailable

__all__ = ["ExtractBatch", "Extraction", "ExtractorClient", "ExtractorRejected", "ExtractorUnavailable"]
