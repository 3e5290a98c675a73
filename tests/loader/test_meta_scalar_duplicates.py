"""Per-image meta from a side file, declared scalar fields, and `loader duplicates`, on the real Milvus."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from catalog.duplicates import brute_force_groups
from catalog.filters import to_expression
from loader.meta import MetaError, MetaFile
from tests.loader.conftest import run_loader, write_classic


def test_meta_files_in_both_layouts(tmp_path):
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"name": "a.jpg", "category": "shoes", "price": 9.5}\n\n{"name": "b.jpg", "sale": true}\n')
    m = MetaFile(jsonl)
    assert m.lookup(["a.jpg", "x.jpg", "b.jpg"]) == [{"category": "shoes", "price": 9.5}, {}, {"sale": True}]
    table = tmp_path / "m.csv"
    table.write_text("name,category,price,size\na.jpg,shoes,9.5,42\nb.jpg,bags,,\n")
    assert MetaFile(table).lookup(["a.jpg", "b.jpg"]) == [{"category": "shoes", "price": 9.5, "size": 42},
                                                          {"category": "bags"}]


@pytest.mark.parametrize("text, suffix, words", [
    ('{"category": "x"}\n', ".jsonl", ":1: each row needs a non-empty string 'name'"),
    ("[1, 2]\n", ".jsonl", ":1: each line must be a JSON object"),
    ('{"name": "a"\n', ".jsonl", ":1: not JSON"),
    ("file,category\na,b\n", ".csv", "needs a 'name' column"),
])
def test_bad_meta_files_name_file_and_line(tmp_path, text, suffix, words):
    path = tmp_path / f"m{suffix}"
    path.write_text(text)
    with pytest.raises(MetaError, match=words.replace("[", r"\[")):
        MetaFile(path)


def _meta_file(tmp_path, names):
    path = tmp_path / "meta.jsonl"
    cats = ["shoes", "bags", "hats"]
    with open(path, "w") as f:
        for i, name in enumerate(names):
            if i % 7:  # every 7th image has no meta: {} and the fields' empty values
                f.write(json.dumps({"name": name, "category": cats[i % 3], "price": i * 1.5}) + "\n")
    return path


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["insert", "bulk-npy", "bulk-parquet"])
def test_scalar_fields_and_meta_land_in_every_mode(milvus_server, catalog, tmp_path, state_dir, mode):
    _, names = write_classic(tmp_path / "a.h5", 300, dim=8)
    meta = _meta_file(tmp_path, names)
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri, "--collection", catalog.collection,
            "--scalar-field", "category", "--scalar-field", "price:float", "--meta", str(meta), "-q",
            "--index", "FLAT"]
    if mode != "insert":
        args += ["--mode", "bulk", "--bulk-dir", str(tmp_path / "stage"), "--bulk-rows", "1000",
                 "--bulk-format", mode.split("-")[1]]
    res = run_loader(*args, timeout=300)
    assert res.returncode == 0, res.stderr
    assert catalog.scalar_fields() == {"category": "str", "price": "float"}
    rows = {r["name"]: r["meta"] for r in catalog.get(names[:8])}
    assert rows[names[1]] == {"category": "bags", "price": 1.5} and rows[names[0]] == {}
    q = np.ones(8, np.float32)
    fields = catalog.scalar_fields()
    for filt, want in (({"category": "hats"}, [n for i, n in enumerate(names) if i % 7 and i % 3 == 2]),
                       ({"price": {"gte": 300}}, [n for i, n in enumerate(names) if i % 7 and i * 1.5 >= 300])):
        hits = catalog.search(q, top_k=300, filter=to_expression(filt, fields), consistency_level="Strong")[0]
        assert sorted(h["name"] for h in hits) == sorted(want), filt


@pytest.mark.integration
def test_scalar_fields_cannot_be_added_to_an_existing_collection(milvus_server, catalog, tmp_path, state_dir):
    write_classic(tmp_path / "a.h5", 20, dim=8)
    base = ["import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri, "--collection", catalog.collection]
    assert run_loader(*base, "-q").returncode == 0
    res = run_loader(*base, "--scalar-field", "category")
    assert res.returncode == 1 and "cannot be added later" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert run_loader(*base, "--scalar-field", "name").returncode == 2  # reserved: a usage error


@pytest.mark.integration
def test_duplicates_verb_finds_the_planted_groups(milvus_server, catalog, tmp_path, state_dir):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((400, 16)).astype(np.float32)
    names = [f"img-{i:04d}.jpg" for i in range(400)]
    for i in range(0, 60, 3):  # 20 planted groups of three near-copies
        base[i + 1] = base[i] + 0.01 * rng.standard_normal(16)
        base[i + 2] = base[i] + 0.01 * rng.standard_normal(16)
    import h5py

    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["dataset_1"], f["dataset_2"] = base, np.array([n.encode() for n in names])
    common = ["--milvus-uri", milvus_server.uri, "--collection", catalog.collection]
    assert run_loader("import", str(tmp_path / "d.h5"), *common, "-q").returncode == 0
    res = run_loader("duplicates", "--threshold", "0.98", *common, "-q", timeout=300)
    assert res.returncode == 0, res.stderr
    groups = [json.loads(line) for line in res.stdout.splitlines()]
    expected = brute_force_groups(names, base, 0.98)
    assert [g["names"] for g in groups] == expected and len(expected) == 20
    assert all(g["size"] == 3 and g["best_score"] >= 0.98 for g in groups)
    assert "searched 400 images" in res.stderr and "20 groups" in res.stderr
    out = tmp_path / "groups.csv"
    res = run_loader("duplicates", "--threshold", "0.98", "--format", "csv", "-o", str(out), *common, "-q")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 60 and {r["group"] for r in rows} == {str(i) for i in range(1, 21)}
