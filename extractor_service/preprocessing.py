"""Image bytes -> model input for every backbone, with limits checked first: the one place for preprocessing.

Two steps: `decode_image` (bytes -> (size, size, 3) uint8 RGB, with the backbone's resize filter) and
`normalize` (uint8 -> float32 model input, with the backbone's normalisation). `load_image` does both;
with its defaults (VGG16's preprocessing) it reproduces

    img = keras.utils.load_img(path, target_size=(size, size))   # PIL open, convert('RGB'), NEAREST resize
    x = keras.applications.vgg16.preprocess_input(keras.utils.img_to_array(img))

bit for bit, including two surprises users' existing vectors depend on:

- the resize is NEAREST (Keras's default), not bilinear or antialiased, and the aspect ratio is not kept;
- EXIF orientation is ignored: a photo stored sideways with an "rotate 90" tag is seen sideways.

Changing either would change vectors (and the fingerprint's preprocessing version). Before any pixel is
decoded the byte size, the format (an allow-list: no plugin that shells out, such as EPS) and the pixel
count (decompression bombs) are checked; truncated files are errors, never padded with grey.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# Keras's caffe-mode ImageNet means, in BGR order.
IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
# Keras's torch-mode ImageNet mean and standard deviation, RGB, on [0, 1] pixels.
IMAGENET_RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR}
# Formats we decode (JPEG includes MPO, what many phones write). No plugin that runs other programs (EPS).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")

ImageFile.LOAD_TRUNCATED_IMAGES = False  # as Keras: a truncated file is an error, not a grey-padded image


class ImageError(ValueError):
    """One image cannot be used. `code` and `status` (the HTTP status it deserves) go to the client."""

    def __init__(self, code: str, status: int, message: str):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "status": self.status}


def open_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Open (header only) and check size, format and pixel count; raises ImageError. No pixels decoded yet."""
    if not data:
        raise ImageError("empty_file", 400, "the image part is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError("file_too_large", 413, f"the image is over the limit of {max_bytes} bytes")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", 413, f"image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise _unreadable(data) from None
    except Exception as exc:  # noqa: BLE001 - a header Pillow recognised but cannot parse (any exception type)
        raise ImageError("bad_image", 422, f"cannot read the image header: {exc}") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError("bad_image", 422, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            "too_many_pixels", 413, f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return img


def _unreadable(data: bytes) -> ImageError:
    """Name the format when Pillow knows it but we do not accept it, else say it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as other:  # header only; nothing is decoded or run
            fmt = other.format
    except Exception:  # noqa: BLE001 - any failure here just means "not an image"
        fmt = None
    accepted = ", ".join(ALLOWED_FORMATS)
    if fmt:
        return ImageError("unsupported_format", 415, f"{fmt} images are not supported; send one of {accepted}")
    return ImageError("not_an_image", 415, f"the data is not an image in a supported format ({accepted})")


def decode_image(data: bytes, size: int, resample: str = "nearest", max_bytes: int = 20_000_000,
                 max_pixels: int = 40_000_000) -> np.ndarray:
    """Decode image bytes into (size, size, 3) uint8 RGB; raises ImageError.

    PIL open -> convert('RGB') when mode != 'RGB' -> resize to (size, size) with `resample` (nearest, as
    Keras's load_img, or bilinear) when not already that size. No EXIF transpose, aspect ratio not kept.
    """
    img = source = open_image(data, max_bytes, max_pixels)
    try:
        img.load()  # decode now so truncation and corrupt data surface here, as ImageError
        if img.mode != "RGB":
            img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), RESAMPLE[resample])
        x = np.asarray(img, dtype=np.uint8)
    except OSError as exc:
        if "truncated" in str(exc) or "broken data stream" in str(exc):
            raise ImageError("truncated_image", 422, f"the image file is truncated or corrupt: {exc}") from None
        raise ImageError("bad_image", 422, f"cannot decode the image: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - malformed files raise all sorts (ValueError, struct.error, ...)
        raise ImageError("bad_image", 422, f"cannot decode the image: {exc}") from None
    finally:
        img.close()
        source.close()
    return x


def caffe(x):
    """Keras's `preprocess_input` in caffe mode (VGG16, ResNet50): RGB->BGR, minus the ImageNet mean."""
    return x[..., [2, 1, 0]] - IMAGENET_BGR_MEAN


def torch_mode(x):
    """Keras's `preprocess_input` in torch mode (DenseNet121): [0, 1], minus mean, over std, RGB."""
    return (x / np.float32(255.0) - IMAGENET_RGB_MEAN) / IMAGENET_RGB_STD


def lite(x):
    """The EfficientNet-Lite reference's input: (x - 127) / 128, RGB."""
    return (x - np.float32(127.0)) / np.float32(128.0)


# Written with indexing and arithmetic only, so the same functions normalise numpy arrays here and
# device arrays (JAX, CuPy, PyTorch) where images are decoded on a GPU.
NORMALIZATIONS = {"caffe": caffe, "torch": torch_mode, "lite": lite}


def normalize(x, normalization: str = "caffe"):
    """uint8 (or float) RGB pixels -> float32 model input for `normalization` (a NORMALIZATIONS key)."""
    if isinstance(x, np.ndarray):
        x = x.astype(np.float32, copy=False)
    return NORMALIZATIONS[normalization](x)


def load_image(data: bytes, size: int, max_bytes: int = 20_000_000, max_pixels: int = 40_000_000,
               resample: str = "nearest", normalization: str = "caffe") -> np.ndarray:
    """Decode and normalise: a (size, size, 3) float32 model input; raises ImageError.

    With the defaults (VGG16's preprocessing) this is identical to the classic Keras code.
    """
    return normalize(decode_image(data, size, resample, max_bytes, max_pixels), normalization)

