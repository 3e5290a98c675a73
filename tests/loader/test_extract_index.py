"""`loader extract` and `loader index` against the real extractor service (and Milvus for index)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from tests.loader.conftest import all_names, run_loader

pytestmark = pytest.mark.integration


@pytest.fixture
def photo_dir(sample_photos, tmp_path):
    """Real photos in a nested folder, plus one file that is not an image."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    photos = sorted(sample_photos.glob("*.jpg"))[:5]
    for p in photos[:3]:
        shutil.copy(p, root / p.name)
    for p in photos[3:]:
        shutil.copy(p, root / "sub" / p.name)
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    return root


def test_extract_writes_classic_layout_skips_bad_images_and_resumes(extractor_service, photo_dir, tmp_path):
    out = tmp_path / "feats.h5"
    args = ["extract", str(photo_dir), "-o", str(out), "--extractor-url", extractor_service.url, "-q",
            "--images-per-request", "2"]
    res = run_loader(*args, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("read 6, extracted 5, skipped 1 (")
    with h5py.File(out, "r") as f:  # exactly what the classic query script does
        feats, names = f["dataset_1"][:], f["dataset_2"][:]
        info = {k: f.attrs[k] for k in ("fingerprint", "dim", "weights")}
    assert feats.shape == (5, int(info["dim"])) and feats.dtype == np.float32
    assert sorted(n.decode() for n in names) == sorted(
        p.relative_to(photo_dir).as_posix() for p in photo_dir.rglob("*.jpg") if p.name != "broken.jpg")
    assert any(n.decode().startswith("sub/") for n in names)
    assert info["fingerprint"] and info["weights"]
    assert (tmp_path / "feats.h5.skipped.tsv").read_text().startswith("broken.jpg\t")

    shutil.copy(next(photo_dir.glob("*.jpg")), photo_dir / "new.jpg")
    res = run_loader(*args, timeout=300)  # resumes: only the new (and still broken) image is sent
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("read 7, extracted 6, skipped 1 (") and "resumed after row 5" in res.stdout
    with h5py.File(out, "r") as f:
        assert f["dataset_1"].shape[0] == 6


def test_index_extracts_and_imports_by_relative_name(extractor_service, milvus_server, catalog, photo_dir,
                                                     state_dir):
    args = ["index", str(photo_dir), "--extractor-url", extractor_service.url, "--milvus-uri",
            milvus_server.uri, "--collection", catalog.collection, "-q"]
    for _ in range(2):
        res = run_loader(*args, timeout=300)
        assert res.returncode == 0, res.stderr
        assert "imported 5" in res.stdout and "image_" in res.stdout
    assert catalog.count() == 5
    assert sorted(all_names(catalog)) == sorted(
        p.relative_to(photo_dir).as_posix() for p in photo_dir.rglob("*.jpg") if p.name != "broken.jpg")
    assert catalog.fingerprint()  # recorded from the extractor
    assert catalog.is_loaded()


def test_extractor_unreachable_is_one_line(tmp_path, photo_dir):
    res = run_loader("extract", str(photo_dir), "-o", str(tmp_path / "x.h5"), "--extractor-url",
                     "http://127.0.0.1:9")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("Error: extractor unavailable at http://127.0.0.1:9:")
    assert res.stderr.rstrip().endswith("Start it or set EXTRACTOR_URL.")
