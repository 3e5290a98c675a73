"""`load_image` must equal keras load_img + img_to_array + preprocess_input exactly, and reject bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from extractor_service.preprocessing import ImageError, load_image
from tests.extractor.conftest import classic_preprocess


@pytest.mark.parametrize("size", [64, 224])
def test_identical_to_classic_preprocessing(varied, varied_dir, size):
    assert len(varied) >= 12
    for name, data in varied.items():
        ours = load_image(data, size)
        theirs = classic_preprocess(varied_dir / name, size)[0]
        assert ours.shape == theirs.shape == (size, size, 3), name
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_exif_orientation_is_ignored_like_keras(varied):
    """A JPEG tagged 'rotate 90' gives the same input as the untagged image (classic behaviour)."""
    np.testing.assert_array_equal(load_image(varied["exif_rotated.jpg"], 64), load_image(varied["baseline.jpg"], 64))


def test_resize_is_nearest_not_bilinear():
    """Nearest resize only picks existing pixel values: a 2-colour checkerboard stays 2-colour."""
    board = (np.indices((100, 100)).sum(axis=0) % 2 * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(board).save(buf, format="PNG")
    x = load_image(buf.getvalue(), 64)
    assert len(np.unique(x[..., 0])) == 2


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _error(data: bytes, **limits) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(data, 64, **limits)
    return info.value


def test_empty_file():
    err = _error(b"")
    assert (err.code, err.status) == ("empty_file", 400)


def test_not_an_image():
    err = _error(b"hello, this is text and not an image at all")
    assert (err.code, err.status) == ("not_an_image", 415)


def test_unsupported_format_is_named():
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="ICO")
    err = _error(buf.getvalue())
    assert (err.code, err.status) == ("unsupported_format", 415)
    assert "ICO" in err.message


def test_truncated_jpeg_is_an_error_not_grey_padding(varied):
    data = varied["baseline.jpg"]
    err = _error(data[: len(data) // 2])
    assert (err.code, err.status) == ("truncated_image", 422)


def test_truncated_png(varied):
    data = varied["alpha.png"]
    err = _error(data[: len(data) // 2])
    assert err.status == 422 and err.code in ("truncated_image", "bad_image")


def test_corrupt_header():
    err = _error(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert err.status in (415, 422)


def test_over_byte_limit(varied):
    err = _error(varied["baseline.jpg"], max_bytes=1000)
    assert (err.code, err.status) == ("file_too_large", 413)
    assert "1000" in err.message


def test_over_pixel_limit_checked_before_decoding():
    # 1-bit 10000 x 5000 = 50 megapixels compresses to a few kB: a small decompression bomb.
    bomb = _png(Image.new("1", (10_000, 5_000)))
    assert len(bomb) < 100_000
    err = _error(bomb, max_pixels=40_000_000)
    assert (err.code, err.status) == ("too_many_pixels", 413)
    assert "10000x5000" in err.message


def test_pillow_bomb_limit_also_maps_to_413():
    # Over twice Pillow's own MAX_IMAGE_PIXELS Pillow refuses at open; still a clean 413.
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 10
    bomb = _png(Image.new("1", (side, side)))
    err = _error(bomb, max_pixels=10 * side * side)
    assert (err.code, err.status) == ("too_many_pixels", 413)
