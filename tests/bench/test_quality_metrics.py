"""The pure parts of `bench/quality.py` (its modules bench/_quality_*.py): metrics on hand-made examples, idx
reader, edits, goal check. No TensorFlow."""

from __future__ import annotations

import gzip
import importlib.util
import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the modules import their siblings, as when quality.py runs as a script

import _quality_data as data  # noqa: E402
import _quality_metrics as metrics  # noqa: E402
import _quality_models as models  # noqa: E402
import _quality_report as report  # noqa: E402


def test_entry_point_loads():
    """bench/quality.py, the entry point (a script: loaded from its file), imports its modules."""
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main) and module.EDITS is data.EDITS and module.Scores is report.Scores


def unit(rows) -> np.ndarray:
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- precision@k ----

def test_precision_at_k_excludes_self():
    # Two tight clusters of 3; with k=2 every item's two neighbours are its cluster mates (itself excluded).
    vectors = unit([[1, 0], [0.99, 0.1], [0.98, 0.15], [0, 1], [0.1, 0.99], [0.15, 0.98]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.precision_at_k(vectors, labels, k=2) == pytest.approx(1.0)
    # With k=3 the third neighbour must come from the other cluster: 2/3, not 1 (self would make it 1).
    assert metrics.precision_at_k(vectors, labels, k=3) == pytest.approx(2 / 3)


def test_precision_at_k_known_mixture():
    # Items 0 and 1 are each other's nearest but have different labels; 2 and 3 match.
    vectors = unit([[1, 0], [0.95, 0.3], [0, 1], [0.3, 0.95]])
    labels = np.array([0, 1, 2, 2])
    assert metrics.precision_at_k(vectors, labels, k=1) == pytest.approx(0.5)


def test_precision_at_k_identical_vectors_do_not_count_self():
    vectors = unit([[1, 0]] * 4)
    labels = np.array([0, 1, 1, 1])
    # Item 0 has no same-label neighbour; items 1..3 have two of three.
    assert metrics.precision_at_k(vectors, labels, k=3) == pytest.approx((0 + 3 * 2 / 3) / 4)


# ---- recall@1 and MRR ----

def test_ranks_recall_and_mrr_on_a_known_example():
    sims = np.array([
        [0.9, 0.1, 0.2, 0.3],  # relevant 0 is first
        [0.8, 0.5, 0.7, 0.1],  # relevant 1 is third
        [0.1, 0.6, 0.4, 0.2],  # relevant 2 is second
        [0.2, 0.2, 0.2, 0.9],  # relevant 3 is first
    ], np.float32)
    ranks = metrics.ranks_of_relevant(sims, np.array([0, 1, 2, 3]))
    assert ranks.tolist() == [1, 3, 2, 1]
    assert metrics.recall_at_1(ranks) == pytest.approx(0.5)
    assert metrics.mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 / 2 + 1) / 4)


def test_ties_rank_the_relevant_item_last():
    sims = np.array([[0.5, 0.5, 0.5], [0.7, 0.7, 0.1]], np.float32)
    ranks = metrics.ranks_of_relevant(sims, np.array([0, 1]))
    assert ranks.tolist() == [3, 2]
    assert metrics.recall_at_1(ranks) == 0.0


def test_raw_pixel_vectors_are_centred_unit_and_brightness_offset_free():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 200, (3, 4, 4, 3), dtype=np.uint8)
    v = models.raw_pixel_vectors(pixels)
    assert v.shape == (3, 48) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(v.mean(axis=1), 0, atol=1e-6)
    brighter = models.raw_pixel_vectors(pixels + np.uint8(40))
    np.testing.assert_allclose(brighter, v, atol=1e-5)
    assert np.isfinite(models.raw_pixel_vectors(np.full((1, 2, 2, 3), 7, np.uint8))).all()  # flat image


# ---- idx reader and selection ----

def write_idx(path: Path, array: np.ndarray, code: int) -> Path:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(dtype).tobytes())
    return path


def test_read_idx_images_and_labels(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 3], np.uint8)
    got = data.read_idx(write_idx(tmp_path / "img-idx3-ubyte.gz", images, 0x08))
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    got = data.read_idx(write_idx(tmp_path / "lab-idx1-ubyte.gz", labels, 0x08))
    np.testing.assert_array_equal(got, labels)


def test_read_idx_big_endian_types(tmp_path):
    ints = np.array([[1, -2, 70000]], np.int32)
    got = data.read_idx(write_idx(tmp_path / "i.gz", ints, 0x0C))
    np.testing.assert_array_equal(got, ints)
    floats = np.array([0.5, -1.25], np.float32)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "f.gz", floats, 0x0D)), floats)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="not an idx"):
        data.read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(ValueError, match="needs"):
        data.read_idx(short)


def test_balanced_selection_takes_the_first_of_each_class():
    labels = np.array([1, 0, 1, 2, 0, 1, 2, 0, 2])
    picked = data.balanced_selection(labels, 2)
    assert picked.tolist() == [0, 1, 2, 3, 4, 6]
    assert np.bincount(labels[picked]).tolist() == [2, 2, 2]
    with pytest.raises(ValueError):
        data.balanced_selection(labels, 4)


def test_spread():
    assert data.spread(10, 3).tolist() == [0, 4, 9]  # ends included, evenly spaced
    assert data.spread(3, 5).tolist() == [0, 1, 2]


# ---- edits ----

@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8), "RGB")  # 100 wide, 80 high


EXPECTED = {  # edit -> (mode, size) for a 100x80 RGB image
    "crop65": ("RGB", (65, 52)),
    "bright1.6": ("RGB", (100, 80)),
    "dark0.5": ("RGB", (100, 80)),
    "jpeg20": ("RGB", (100, 80)),
    "blur3": ("RGB", (100, 80)),
    "mirror": ("RGB", (100, 80)),
    "gray": ("L", (100, 80)),
    "quarter": ("RGB", (25, 20)),
    "wide1.25": ("RGB", (125, 80)),
    "crop40": ("RGB", (40, 32)),
    "corner60": ("RGB", (60, 48)),
    "repost": ("RGB", (40, 32)),
}


def test_at_least_seven_edits_and_all_checked():
    assert len(data.EDITS) >= 7
    assert set(data.EDITS) == set(EXPECTED) | {"rotate20"}


@pytest.mark.parametrize("edit", sorted(EXPECTED))
def test_edit_mode_and_size(photo, edit):
    out = data.EDITS[edit](photo)
    assert (out.mode, out.size) == EXPECTED[edit]
    assert out is not photo


def test_rotation_expands_and_changes_pixels(photo):
    out = data.EDITS["rotate20"](photo)
    assert out.mode == "RGB"
    assert out.size[0] > 100 and out.size[1] > 80  # expanded to hold the rotated image
    assert np.asarray(out)[0, 0].tolist() == [0, 0, 0]  # black corners


def test_edits_change_the_image_as_named(photo):
    a = np.asarray(photo, np.float32)
    assert np.asarray(data.EDITS["bright1.6"](photo), np.float32).mean() > a.mean() * 1.3
    assert np.asarray(data.EDITS["dark0.5"](photo), np.float32).mean() < a.mean() * 0.6
    np.testing.assert_array_equal(np.asarray(data.EDITS["mirror"](photo)), a[:, ::-1].astype(np.uint8))
    assert np.asarray(data.EDITS["blur3"](photo), np.float32).std() < a.std() / 2  # noise smoothed away
    jpeg = np.asarray(data.EDITS["jpeg20"](photo), np.float32)
    assert 0 < np.abs(jpeg - a).mean() < 80  # lossy but still the same picture


def test_png_round_trip_and_gray_to_png():
    img = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), "L")
    back = Image.open(io.BytesIO(data.png_bytes(img)))
    assert back.format == "PNG"
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))
    up = Image.open(io.BytesIO(data.gray_to_png(np.full((28, 28), 200, np.uint8), 64)))
    assert (up.mode, up.size) == ("RGB", (64, 64))
    assert np.asarray(up).min() == np.asarray(up).max() == 200


def test_goal_check():
    S = report.Scores
    good = {"efficientnet-lite0": S(0.77, 0.83), "raw-pixels": S(0.72, 0.70), "vgg16-hed": S(0.52, 0.61)}
    assert report.goal_check(good) == (True, [])
    bad = dict(good, **{"vgg16-hed": S(0.52, 0.75)})
    met, failed = report.goal_check(bad)
    assert not met and len(failed) == 1 and "vgg16-hed" in failed[0]
    met, failed = report.goal_check({k: v for k, v in good.items() if k != "raw-pixels"})
    assert not met and all("not measured" in f for f in failed) and len(failed) == 2


def test_miss_sources_groups_distractors_by_source():
    neardup = data.NearDupSet([b""] * 4, ["astronaut", "coffee", "lfw_subset[0]", "lfw_subset[5]"], 2,
                                 np.array([10, 20]))
    # columns 4 and 5 are the reused Fashion-MNIST vectors
    got = metrics.miss_sources(np.array([2, 3, 5, 1, 2]), neardup)
    assert got == "lfw_subset 3, fashion-mnist 1, coffee 1"
    assert metrics.miss_sources(np.array([], int), neardup) == ""
