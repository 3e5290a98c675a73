"""File reading, row checks and the CLI's dry run: no servers needed."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from loader import hdf5
from loader.cli import cli
from loader.importer import ImportOptions, import_h5
from loader.validate import check_chunk, decode_name, duplicate_rows
from tests.loader.conftest import write_classic


def test_classic_layout_streams_in_chunks(tmp_path):
    vectors, names = write_classic(tmp_path / "a.h5", 25, dim=8)
    layout = hdf5.open_layout(tmp_path / "a.h5")
    assert (layout.vectors, layout.names, layout.rows, layout.dim) == ("dataset_1", "dataset_2", 25, 8)
    chunks = list(hdf5.iter_chunks(layout, chunk_rows=10))
    assert [len(c.names) for c in chunks] == [10, 10, 5]
    assert np.array_equal(np.concatenate([c.vectors for c in chunks]), vectors)
    assert [n.decode() for c in chunks for n in c.names] == names


def test_variable_length_names_and_other_dataset_names_are_detected(tmp_path):
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features/vecs", data=np.ones((3, 4), dtype=np.float64))
        f.create_dataset("features/ids", data=["a", "b", "ç"], dtype=h5py.string_dtype())
    layout = hdf5.open_layout(path)
    assert (layout.vectors, layout.names) == ("features/vecs", "features/ids")
    chunk = next(hdf5.iter_chunks(layout))
    assert [decode_name(n) for n in chunk.names] == ["a", "b", "ç"]
    assert chunk.vectors.dtype == np.float32


def test_ambiguous_file_lists_datasets_and_explicit_choice_works(tmp_path):
    path = tmp_path / "amb.h5"
    with h5py.File(path, "w") as f:
        f["emb_a"] = np.ones((2, 4), dtype=np.float32)
        f["emb_b"] = np.ones((2, 4), dtype=np.float32)
        f["keys"] = np.array([b"x", b"y"])
    with pytest.raises(hdf5.LayoutError) as err:
        hdf5.open_layout(path)
    msg = str(err.value)
    assert "several float datasets" in msg and "emb_a float32 (2, 4)" in msg and "--vectors NAME" in msg
    assert hdf5.open_layout(path, vectors="emb_b").vectors == "emb_b"


def test_row_checks_skip_and_count_each_reason(tmp_path):
    path = tmp_path / "bad.h5"
    vectors, names = write_classic(path, 10, dim=4)
    with h5py.File(path, "r+") as f:
        v = f["dataset_1"]
        v[1] = [np.nan, 0, 0, 1]
        v[2] = [np.inf, 0, 0, 1]
        v[3] = 0
        n = f["dataset_2"]
        n[4] = b"\xff\xfe"
        n[5] = b""
        n[7] = n[6]  # repeated name: the first row wins
    summary = import_h5(path, None, ImportOptions(dry_run=True, quiet=True))
    assert summary.read == 10 and summary.imported == 4
    assert dict(summary.skipped) == {"nan_or_inf": 2, "zero_vector": 1, "bad_name": 2, "duplicate_name": 1}


def test_vectors_are_l2_normalised_and_wrong_dim_rows_skipped():
    vecs = [np.array([3.0, 4.0]), np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0])]
    checked = check_chunk(0, [b"a", b"b", b"c"], vecs, dim=2, duplicates=set())
    assert checked.names == ["a", "c"] and dict(checked.skipped) == {"wrong_dim": 1}
    assert np.allclose(checked.vectors, [[0.6, 0.8], [0.0, 1.0]])
    assert checked.vectors.dtype == np.float32


def test_duplicate_detection_compares_real_names():
    chunks = [(0, [b"a", b"b"]), (2, [b"a", b"c", b"b", b"a"])]
    flat = [n for _, c in chunks for n in c]
    assert duplicate_rows(chunks, lambda rows: [flat[r] for r in rows]) == {2, 4, 5}


def test_dry_run_cli_prints_summary(tmp_path):
    write_classic(tmp_path / "a.h5", 12, dim=4)
    res = CliRunner().invoke(cli, ["import", str(tmp_path / "a.h5"), "--dry-run", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("read 12, valid 12, skipped 0, ")


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "Error: {p}: no such file; check the path"),
        ("text", "Error: {p}: not a readable HDF5 file"),
        ("empty", "Error: {p}: cannot tell which dataset holds the vectors (no float dataset); "
                  "datasets found: none; choose them with --vectors NAME --names NAME"),
        ("mismatch", "Error: {p}: 3 vectors in 'dataset_1' but 2 names in 'dataset_2'"),
    ],
)
def test_file_errors_are_one_line_with_the_fix(tmp_path, setup, expected):
    path = tmp_path / "f.h5"
    if setup == "text":
        path.write_text("not hdf5")
    elif setup == "empty":
        h5py.File(path, "w").close()
    elif setup == "mismatch":
        with h5py.File(path, "w") as f:
            f["dataset_1"] = np.ones((3, 4), dtype=np.float32)
            f["dataset_2"] = np.array([b"a", b"b"])
    # Milvus is never asked (nothing listens on this port): the file is checked first.
    res = CliRunner().invoke(cli, ["import", str(path), "--milvus-uri", "http://127.0.0.1:9", "-q"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.format(p=path)), res.output


def test_writer_appends_resumes_and_widens_names(tmp_path):
    path = tmp_path / "w.h5"
    with hdf5.ClassicWriter(path, 4, {"fingerprint": "fp1"}) as w:
        w.append(["a.jpg", "b.jpg"], np.ones((2, 4)))
    with hdf5.ClassicWriter(path, 4) as w:
        assert w.names() == {"a.jpg", "b.jpg"}
        long = "d/" + "x" * 100 + ".jpg"
        w.append([long], np.full((1, 4), 2.0))
    with h5py.File(path, "r") as f:  # what the classic query script does
        feats, names = f["dataset_1"][:], f["dataset_2"][:]
        assert feats.shape == (3, 4) and names.tolist() == [b"a.jpg", b"b.jpg", long.encode()]
        assert f.attrs["fingerprint"] == "fp1" and f.attrs["dim"] == 4
    with pytest.raises(hdf5.LayoutError, match="holds 4-d vectors, the extractor gives 8-d"):
        hdf5.ClassicWriter(path, 8)


def test_chunk_decoding_matches_decoding_each_name():
    """The one-call decode of a chunk must agree with `decode_name` on every mix of good and bad names."""
    import random

    from loader.validate import decode_name, decode_names

    rng = random.Random(1)
    pieces = [b"a", b"/", b"\xc3", b"\xa9", b"\x00", b"\xff", "中".encode(), b"x" * 200]
    for _ in range(5000):
        raw = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 6))]
        assert decode_names(raw) == [decode_name(b) for b in raw], raw


def test_row_checks_match_a_float64_reference_on_extreme_rows():
    """The fused float32 norm pass must give each row the reason and the unit vector a per-row float64
    computation gives, including rows whose squares leave float32's range either way."""
    rng = np.random.default_rng(3)
    scales = np.array([0, 1e-44, 1e-30, 3e-23, 1e-21, 1e-19, 1e-3, 1, 1e3, 1e19, 1e30, 3e38], dtype=np.float64)
    for _ in range(200):
        n, dim = int(rng.integers(1, 12)), int(rng.integers(1, 9))
        with np.errstate(over="ignore"):  # 3e38 x a normal sample: some become inf, also a case
            mat = (rng.standard_normal((n, dim)) * rng.choice(scales, (n, 1))).astype(np.float32)
        holes = rng.random((n, dim)) < 0.05
        mat[holes] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0], dtype=np.float32), holes.sum())
        got = check_chunk(0, [f"r{i}".encode() for i in range(n)], mat, dim, set())

        wide = mat.astype(np.float64)
        finite = np.isfinite(wide).all(axis=1)
        nonzero = (wide != 0).any(axis=1)
        keep = np.nonzero(finite & nonzero)[0]
        assert got.rows.tolist() == keep.tolist()
        assert got.skipped.get("nan_or_inf", 0) == int((~finite).sum())
        assert got.skipped.get("zero_vector", 0) == int((finite & ~nonzero).sum())
        scale = np.abs(wide[keep]).max(axis=1, keepdims=True)
        ref = wide[keep] / scale
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        assert got.vectors.dtype == np.float32
        np.testing.assert_allclose(got.vectors, ref, rtol=1e-5, atol=1e-6)
