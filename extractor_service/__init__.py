"""Image feature extractor served over HTTP: VGG16 (vectors identical to the classic Keras pipeline),
ResNet50, DenseNet121 or EfficientNet-Lite0 (`backbones/`).

Public pieces: `create_app` (Flask app factory), `load_extractor`, `ExtractorConfig`, `load_image`.
"""

from extractor_service.config import ExtractorConfig

__all__ = ["ExtractorConfig"]
