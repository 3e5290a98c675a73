"""The bad-input corpus, generated in memory: odd-but-valid pictures, broken or foreign files, hostile
multipart bodies and malformed JSON. Everything is small except where size is the point (the huge body),
and the decompression bomb is a real, fully decodable 30000x30000 PNG that is only ~110 KB on the wire.

`Case.expect` says what a correct service does with it: "vector" (a 512-d unit vector from the
extractor, a ranked result list from the search service) or "4xx" (a JSON error with a 4xx status).
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"


@dataclass
class Part:
    """One multipart part; every field is sent byte for byte as given (no client-side cleaning)."""

    name: str = "image"
    filename: str | None = "picture.jpg"
    content_type: str | None = "application/octet-stream"
    data: bytes = b""


@dataclass
class Case:
    """One request of the corpus: a name, the multipart parts, and the expected outcome."""

    id: str
    parts: list[Part] = field(default_factory=list)
    expect: str = "4xx"  # "vector", "4xx" or "either"


# -- encoders -------------------------------------------------------------------------------------------

def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def photo(max_side: int = 96) -> Image.Image:
    """A small real photograph (scikit-image's astronaut), RGB; a fresh copy each call."""
    return _photo(max_side).copy()


@lru_cache(maxsize=4)
def _photo(max_side: int) -> Image.Image:
    img = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB")
    img.thumbnail((max_side, max_side))
    return img


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_raw(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG from its parts (IHDR fields and the compressed IDAT), for what Pillow will not write."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_bomb(side: int = 30_000) -> bytes:
    """A real side x side 1-bit PNG of zeros: every row decodes, ~110 KB compressed, 900 M pixels.

    Compressed in a stream of whole rows, so the test never holds more than a few MB.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    block = row * 1000
    out = []
    for start in range(0, side, 1000):
        out.append(comp.compress(block if start + 1000 <= side else row * (side - start)))
    out.append(comp.flush())
    return png_raw(side, side, 1, 0, b"".join(out))


def png_rgb16(width: int = 32, height: int = 24) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG, a gradient."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 2000, y * 2500, (x + y) * 1000], axis=-1).astype(">u2")
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(height))
    return png_raw(width, height, 16, 2, zlib.compress(raw))


def jpeg_sof_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A JPEG whose frame header claims width x height (4.2 G pixels) with no scan data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(photo(), "JPEG", quality=85, exif=exif)


def animated_gif() -> bytes:
    base = photo(64)
    frames = [base.rotate(a).convert("P", palette=Image.Palette.ADAPTIVE) for a in (0, 90, 180)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def zip_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, data)
    return buf.getvalue()


# -- the corpus -----------------------------------------------------------------------------------------

def image_cases() -> list[Case]:
    """Single-`image` requests, valid-but-odd and invalid; each goes to both services."""
    img = photo()
    jpeg = _save(img, "JPEG", quality=85)
    png = _save(img, "PNG")
    gray16 = Image.fromarray((np.asarray(img.convert("L"), dtype=np.uint16) * 200).astype(np.uint16))
    palette = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)

    def one(id_, data, expect, filename="picture.jpg", content_type="application/octet-stream"):
        return Case(id_, [Part("image", filename, content_type, data)], expect)

    cases = [
        # Valid but odd: a correct result is expected.
        one("1x1.png", _save(Image.new("RGB", (1, 1), (120, 60, 200)), "PNG"), "vector", "1x1.png"),
        one("1x1_black.jpg", _save(Image.new("RGB", (1, 1)), "JPEG"), "vector", "black.jpg"),
        one("animated.gif", animated_gif(), "vector", "anim.gif"),
        one("16bit_gray.png", _save(gray16, "PNG"), "vector", "g16.png"),
        one("16bit_rgb.png", png_rgb16(), "vector", "rgb16.png"),
        one("cmyk.jpg", _save(img.convert("CMYK"), "JPEG", quality=85), "vector", "cmyk.jpg"),
        one("palette_transparent.png", _save(palette, "PNG", transparency=0), "vector", "pal.png"),
        *[one(f"exif_orientation_{k}.jpg", exif_jpeg(k), "vector", f"exif{k}.jpg") for k in range(1, 9)],
        one("png_named_jpg", png, "vector", "really_a_png.jpg"),
        one("jpeg_named_exe", jpeg, "vector", "setup.exe"),
        one("jpeg_as_text_plain", jpeg, "vector", "p.jpg", "text/plain"),
        one("jpeg_as_text_html", jpeg, "vector", "p.jpg", "text/html; charset=utf-8"),
        one("jpeg_bogus_content_type", jpeg, "vector", "p.jpg", "../../etc/passwd"),
        one("dotdot_filename", jpeg, "vector", "../../../../etc/passwd"),
        one("backslash_filename", jpeg, "vector", "..\\..\\windows\\system32\\cmd.jpg"),
        one("unicode_filename", jpeg, "vector", "ねこ 😺 ünïcödé.jpg"),
        one("empty_filename", jpeg, "vector", ""),
        one("long_filename", jpeg, "vector", "a" * 4000 + ".jpg"),
        # A file name that closes its quote and renames the part: refused or read as the image, either is fine.
        one("quote_semicolon_filename", jpeg, "either", 'x"; name="other.jpg'),
        # Broken or not a picture: a 4xx JSON error is expected.
        one("zero_bytes", b"", "4xx"),
        one("truncated.jpg", jpeg[: len(jpeg) // 2], "4xx"),
        one("truncated.png", png[: len(png) // 2], "4xx", "t.png"),
        one("jpeg_soi_only", b"\xff\xd8\xff", "4xx"),
        one("png_signature_only", b"\x89PNG\r\n\x1a\n", "4xx", "s.png"),
        one("gif_header_only", b"GIF89a\x01\x00\x01\x00", "4xx", "h.gif"),
        one("png_bad_crc", png[:29] + b"\0\0\0\0" + png[33:], "4xx", "crc.png"),
        one("plain_text", b"hello, this is not a picture\n" * 10, "4xx", "notes.jpg"),
        one("html", b"<!doctype html><html><body><script>alert(1)</script></body></html>", "4xx", "x.html",
            "text/html"),
        one("svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                   b'<rect width="10" height="10" fill="red"/></svg>', "4xx", "x.svg", "image/svg+xml"),
        one("pdf", b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n", "4xx", "x.pdf",
            "application/pdf"),
        one("zip_with_a_jpeg", zip_of("inside.jpg", jpeg), "4xx", "x.zip", "application/zip"),
        one("gzip_of_a_jpeg", gzip.compress(jpeg), "4xx", "x.jpg.gz"),
        one("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "4xx", "x.eps"),
        one("json_as_image", b'{"vector": [1, 2, 3]}', "4xx", "x.json", "application/json"),
        one("random_bytes", np.random.default_rng(7).bytes(4096), "4xx", "r.jpg"),
        one("png_bomb_30000x30000", png_bomb(), "4xx", "bomb.png", "image/png"),
        one("jpeg_header_65000x65000", jpeg_sof_bomb(), "4xx", "bomb.jpg", "image/jpeg"),
    ]
    return cases
