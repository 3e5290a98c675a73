"""The two data sets of bench/quality.py: Fashion-MNIST (idx reader, class-balanced selection) and the
near-duplicate set (catalogue of photos and distractors, 13 edits of each photo as queries), as encoded bytes.

Pure numpy and Pillow (no TensorFlow); what each set holds is described in bench/quality.py's docstring.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from devstack.sample_images import SKIMAGE_PHOTOS, skimage_photos
from extractor_service.preprocessing import ImageError, decode_image

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_IMAGES, FMNIST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip-compressed, as Fashion-MNIST ships) as a numpy array of its shape and type."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (magic {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, the header's shape {shape} needs {expected}")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def balanced_selection(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` items of each class, in file order: fixed and class-balanced."""
    picked = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    short = [int(c) for c, p in zip(np.unique(labels), picked) if len(p) < per_class]
    if short:
        raise ValueError(f"classes {short} have fewer than {per_class} items")
    return np.sort(np.concatenate(picked))


def spread(n_items: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over range(n_items) (all of them when count >= n_items)."""
    if count >= n_items:
        return np.arange(n_items)
    return np.linspace(0, n_items - 1, count).round().astype(int)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    out = Image.open(io.BytesIO(buf.getvalue()))
    out.load()
    return out


def _central_crop(img: Image.Image, share: float) -> Image.Image:
    w, h = img.size
    cw, ch = max(1, round(w * share)), max(1, round(h * share))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def _scale(img: Image.Image, fx: float, fy: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * fx)), max(1, round(h * fy))), Image.BILINEAR)


def _corner_crop(img: Image.Image, share: float) -> Image.Image:
    w, h = img.size
    return img.crop((0, 0, max(1, round(w * share)), max(1, round(h * share))))


def _repost(img: Image.Image) -> Image.Image:
    """A re-shared copy: cropped to 80%, halved, a little brighter, JPEG quality 40."""
    return _jpeg(ImageEnhance.Brightness(_scale(_central_crop(img, 0.8), 0.5, 0.5)).enhance(1.2), 40)


# Near-duplicate edits of an RGB image: name -> edited image. Keep names stable (per-edit table).
# The last three are harder than the rest, so that ImageNet models do not all sit at recall@1 = 1.
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop65": lambda im: _central_crop(im, 0.65),
    "rotate20": lambda im: im.rotate(20, resample=Image.BILINEAR, expand=True),
    "bright1.6": lambda im: ImageEnhance.Brightness(im).enhance(1.6),
    "dark0.5": lambda im: ImageEnhance.Brightness(im).enhance(0.5),
    "jpeg20": lambda im: _jpeg(im, 20),
    "blur3": lambda im: im.filter(ImageFilter.GaussianBlur(3)),
    "mirror": lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
    "gray": lambda im: im.convert("L"),
    "quarter": lambda im: _scale(im, 0.25, 0.25),
    "wide1.25": lambda im: _scale(im, 1.25, 1.0),
    "crop40": lambda im: _central_crop(im, 0.40),
    "corner60": lambda im: _corner_crop(im, 0.60),
    "repost": _repost,
}


def png_bytes(img: Image.Image) -> bytes:
    """Lossless PNG bytes of `img` (a JPEG-edited image keeps its JPEG artefacts, pixel for pixel)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast: thousands of these are made per run
    return buf.getvalue()


def gray_to_png(pixels: np.ndarray, size: int) -> bytes:
    """A small grey uint8 image upscaled (bilinear) to size x size, made RGB, as PNG bytes."""
    img = Image.fromarray(np.asarray(pixels, np.uint8), "L").resize((size, size), Image.BILINEAR)
    return png_bytes(img.convert("RGB"))


# ---- the two sets -------------------------------------------------------------------------------------

@dataclass
class FashionSet:
    images: list[bytes]
    labels: np.ndarray


@dataclass
class NearDupSet:
    catalogue: list[bytes]  # originals first, then image distractors
    catalogue_names: list[str]
    n_originals: int
    fmnist_distractors: np.ndarray  # indices into the Fashion-MNIST set, whose vectors are reused
    queries: list[bytes] = field(default_factory=list)
    query_original: list[int] = field(default_factory=list)
    query_edit: list[str] = field(default_factory=list)


def load_fashion(folder: Path, per_class: int, size: int) -> FashionSet | None:
    """The class-balanced Fashion-MNIST selection as PNG bytes; None (with how to install) when missing."""
    paths = folder / FMNIST_IMAGES, folder / FMNIST_LABELS
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"skipped fashion-mnist: {', '.join(missing)} not found; install it with "
              "`sudo apt-get install dataset-fashion-mnist` (Debian), or pass --fmnist-dir", flush=True)
        return None
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    picked = balanced_selection(labels, per_class)
    return FashionSet([gray_to_png(images[i], size) for i in picked], labels[picked].astype(np.int64))


def load_neardup(n_faces: int, every_other_photo: bool, fmnist: FashionSet | None, n_fmnist: int,
                 size: int) -> NearDupSet:
    """Catalogue (photos + distractors) and edited queries, as encoded bytes (see quality.py's docstring)."""
    import skimage

    photos = skimage_photos()
    catalogue = [p.read_bytes() for p in photos]
    names = [p.stem for p in photos]
    data = Path(skimage.__file__).parent / "data"
    for path in sorted(data.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg") or path.name in SKIMAGE_PHOTOS:
            continue
        try:
            with Image.open(path) as img:
                if min(img.size) < 64:  # icons and test stubs: not catalogue images
                    continue
            decode_image(path.read_bytes(), 8)
        except (OSError, ImageError):
            continue
        catalogue.append(path.read_bytes())
        names.append(path.stem)
    faces = np.load(data / "lfw_subset.npy")
    for i in spread(len(faces), n_faces):
        catalogue.append(gray_to_png(np.clip(faces[i] * 255 + 0.5, 0, 255), size))
        names.append(f"lfw_subset[{i}]")
    fm = spread(len(fmnist.images), n_fmnist) if fmnist is not None else np.zeros(0, int)
    out = NearDupSet(catalogue, names, len(photos), fm)
    for idx, path in enumerate(photos):
        if every_other_photo and idx % 2:
            continue
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        for edit, fn in EDITS.items():
            out.queries.append(png_bytes(fn(rgb)))
            out.query_original.append(idx)
            out.query_edit.append(edit)
    return out

