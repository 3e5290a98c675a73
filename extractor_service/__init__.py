"""VGG16 image feature extractor served over HTTP; vectors identical to the classic Keras pipeline.

Public pieces: `create_app` (Flask app factory), `load_extractor`, `ExtractorConfig`, `load_image`.
"""

from extractor_service.config import ExtractorConfig

__all__ = ["ExtractorConfig"]
