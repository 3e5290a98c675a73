"""Varied test images as bytes: every format and mode the classic pipeline must agree on (issue req. 1)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"


def _photo(name: str, max_side: int = 320) -> Image.Image:
    img = Image.open(SKIMAGE_DATA / name)
    img.load()
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    return img


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def varied_images(large_side: int = 3000) -> dict[str, bytes]:
    """Name -> encoded bytes for >= 12 varied images (formats, modes, sizes, EXIF rotation)."""
    astronaut = _photo("astronaut.png").convert("RGB")
    chelsea = _photo("chelsea.png").convert("RGB")
    coffee = _photo("coffee.png").convert("RGB")
    camera = _photo("camera.png").convert("L")
    rocket = _photo("rocket.jpg").convert("RGB")

    rgba = chelsea.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgba.width, dtype=np.uint8), (rgba.height, 1))
    rgba.putalpha(Image.fromarray(alpha))

    palette = coffee.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)

    # Pillow's convert('RGB') clips 16-bit values at 255 (the classic code does too): keep half below it.
    camera16 = Image.fromarray((np.asarray(camera, dtype=np.uint16) * 2).astype(np.uint16))
    assert camera16.mode in ("I;16", "I")

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the classic pipeline ignores it, so must we
    tiny = astronaut.resize((7, 5), Image.BILINEAR)
    large = rocket.resize((large_side, large_side * 2 // 3), Image.BILINEAR)

    return {
        "baseline.jpg": _save(astronaut, "JPEG", quality=90),
        "progressive.jpg": _save(chelsea, "JPEG", quality=85, progressive=True),
        "alpha.png": _save(rgba, "PNG"),
        "palette_transparent.png": _save(palette, "PNG", transparency=0),
        "grayscale.jpg": _save(camera, "JPEG", quality=90),
        "grayscale_alpha.png": _save(camera.convert("LA"), "PNG"),
        "cmyk.jpg": _save(coffee.convert("CMYK"), "JPEG", quality=90),
        "sixteen_bit.png": _save(camera16, "PNG"),
        "lossy.webp": _save(rocket, "WEBP", quality=80),
        "tiny.png": _save(tiny, "PNG"),
        "large.jpg": _save(large, "JPEG", quality=80),
        "exif_rotated.jpg": _save(astronaut, "JPEG", quality=90, exif=exif),
        "bilevel.png": _save(camera.convert("1"), "PNG"),
        "animated.gif": _save(chelsea.convert("P"), "GIF"),
        "bitmap.bmp": _save(rocket, "BMP"),
        "exact_size.png": _save(astronaut.resize((224, 224)), "PNG"),
        "tiff.tif": _save(coffee, "TIFF", compression="tiff_lzw"),
    }
