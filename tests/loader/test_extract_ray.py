"""`extract --engine ray` on a real local Ray (started once for the module, 2 CPUs, 127.0.0.1 only).

Images are tiny and the model is EfficientNet-Lite0 at 64 px, so each job is seconds; what is checked is
the same at any size: every stage, vectors equal to the extractor service's, a SIGKILLed model actor, a
SIGKILLed driver and its rerun, corrupt images, an empty source, and an S3 prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from loader.sources import FolderSource
from tests.loader.conftest import REPO, run_loader, wait_until

pytest.importorskip("ray", reason="Ray is not installed: make setup-ray")
pytestmark = pytest.mark.integration

SIZE = 64
MODEL = "efficientnet-lite0"
ENV = {"EXTRACTOR_INPUT_SIZE": str(SIZE), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module; yields its GCS address (for jobs run as subprocesses)."""
    from loader.ray_cluster import ray_session

    with ray_session(num_cpus=2, object_store_mb=200) as ray:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:")  # loopback only
        yield address


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """30 small photos-like images (JPEG and PNG, nested), one truncated JPEG and one non-image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ray-images")
    (root / "sub").mkdir()
    rng = np.random.default_rng(7)
    for i in range(30):
        h, w = 40 + (i * 7) % 50, 48 + (i * 11) % 60
        base = np.linspace(0, 255, h * w * 3).reshape(h, w, 3) + rng.normal(0, 40, (h, w, 3))
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        img.save(root / ("sub" if i % 4 == 0 else ".") / f"img{i:02d}.{'png' if i % 5 == 0 else 'jpg'}")
    data = (root / "img01.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.jpg").write_bytes(b"not an image at all")
    return root


GOOD = 30
BAD = {"truncated.jpg": "truncated_image", "notes.jpg": "not_an_image"}


def _options(**kw):
    from loader.ray_job import RayJobOptions

    return RayJobOptions(**{"model": MODEL, "input_size": SIZE, "batch_size": 4, "shard_size": 8, "quiet": True,
                            **kw})


def _read_shards(out: Path) -> dict[str, np.ndarray]:
    """name -> vector over every shard in the manifest; asserts no name is in two shards."""
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    found: dict[str, np.ndarray] = {}
    for shard in manifest["shards"]:
        with h5py.File(out / shard["file"], "r") as f:
            assert f.attrs["fingerprint"] == manifest["fingerprint"]
            for name, vec in zip(f["dataset_2"][:], f["dataset_1"][:]):
                assert name.decode() not in found, f"{name} twice"
                found[name.decode()] = vec
    return found


def _service_vectors(root: Path, names: list[str], model: str = MODEL,
                     weights: str = "auto") -> tuple[dict[str, np.ndarray], str]:
    """The extractor service's vectors for the same files, through its own Extractor class (in-process)."""
    from extractor_service.config import ExtractorConfig
    from extractor_service.extractor import load_extractor

    extractor = load_extractor(ExtractorConfig.from_env({}, model=model, weights=weights, input_size=SIZE))
    try:
        vectors = extractor.extract([(root / n).read_bytes() for n in names])
        return dict(zip(names, vectors)), extractor.fingerprint
    finally:
        extractor.close()


def test_stages_write_shards_with_the_services_vectors_and_reject_bad_images(ray_local, images, tmp_path):
    from loader.ray_job import extract_ray
    from loader.sources import open_source

    out = tmp_path / "out"
    summary = extract_ray(open_source(str(images)), str(out), _options())
    assert (summary.read, summary.imported, sum(summary.skipped.values())) == (GOOD + 2, GOOD, 2)
    assert summary.extra["shards"].startswith("4 in")  # 32 images in shards of 8
    line = summary.line()
    assert line.startswith("read 32, extracted 30, skipped 2 (") and "rows/s, shards 4" in line

    got = _read_shards(out)
    rejects = [r.split("\t") for r in (out / "rejects.tsv").read_text().splitlines()]
    assert {n: reason for n, reason, _ in rejects} == BAD
    assert "sub/img00.png" in got and len(got) == GOOD
    want, fingerprint = _service_vectors(images, sorted(got))
    diff = max(float(np.abs(got[n] - want[n]).max()) for n in got)
    assert diff <= 1e-5, diff
    with h5py.File(out / "shard-000000.h5", "r") as f:
        assert f.attrs["fingerprint"] == fingerprint and f["dataset_1"].dtype == np.float32

    again = extract_ray(open_source(str(images)), str(out), _options())  # nothing left to do: no Ray job
    assert (again.read, again.resumed_from, again.imported) == (32, 32, 30)


@pytest.mark.parametrize("model,weights", [("vgg16", "hed-vgg16"), ("resnet50", "imagenet"),
                                           ("densenet121", "imagenet")])
def test_every_backbone_gives_the_services_vectors(ray_local, images, tmp_path, model, weights):
    from extractor_service.backbones import WeightsError, resolve_model
    from loader.ray_job import extract_ray
    from loader.sources import ListSource

    try:
        resolve_model(model, weights)
    except WeightsError as exc:  # ImageNet weights of Keras's applications need `make weights` (a download)
        pytest.skip(f"{model} weights are not on this machine: {exc}")
    listing = tmp_path / "list.txt"  # absolute paths: the names are the paths
    listing.write_text("".join(f"{images / n}\n" for n in ("img01.jpg", "img02.jpg", "sub/img00.png", "img03.jpg")))
    out = tmp_path / "out"
    extract_ray(ListSource(str(listing)), str(out), _options(model=model, weights=weights))
    got = _read_shards(out)
    want, fingerprint = _service_vectors(images, sorted(got), model, weights)
    assert len(got) == 4 and max(float(np.abs(got[n] - want[n]).max()) for n in got) <= 1e-5
    with h5py.File(out / "shard-000000.h5", "r") as f:
        assert f.attrs["fingerprint"] == fingerprint


def _model_actor_pids() -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if "ModelActor" in " ".join(proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


@dataclass(frozen=True)
class KillingSource:
    """A folder whose `victim` image, when a Ray read task asks for it, first SIGKILLs the model actor.

    The read waits until the driver has rows (the actor is up and working: file `go`), so the actor dies
    mid-job, before it could have seen the victim or anything after it; `go`.done makes it happen once.
    """

    inner: FolderSource
    victim: str
    go: str

    def describe(self) -> str:
        return self.inner.describe()

    def names(self) -> list[str]:
        return self.inner.names()

    def read(self, name: str) -> bytes:
        done = Path(self.go + ".done")
        if name == self.victim and not done.exists():
            assert wait_until(lambda: Path(self.go).exists(), 120, 0.01), "no rows reached the driver"
            pids = _model_actor_pids()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            done.write_text(" ".join(map(str, pids)))
        return self.inner.read(name)


def test_a_killed_model_actor_is_retried_and_no_image_is_lost_or_doubled(ray_local, images, tmp_path):
    from loader.ray_job import extract_ray
    from loader.sources import open_source

    go = tmp_path / "go"
    inner = open_source(str(images))
    source = KillingSource(inner, victim=inner.names()[16], go=str(go))
    out = tmp_path / "out"
    summary = extract_ray(source, str(out), _options(batch_size=1, shard_size=4),
                          on_rows=lambda _n: go.touch())
    assert Path(f"{go}.done").read_text().strip(), "no model actor process was found to kill"
    assert (summary.read, summary.imported) == (32, GOOD)
    assert len(_read_shards(out)) == GOOD


def _manifest_shards(out: Path) -> int:
    import json

    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (OSError, ValueError):
        return 0


def test_a_killed_driver_reruns_and_skips_finished_shards(ray_local, images, tmp_path):
    out = tmp_path / "out"
    args = ["extract", str(images), "-o", str(out), "--engine", "ray", "--model", MODEL, "--ray-address",
            ray_local, "--images-per-batch", "1", "--shard-size", "2", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "loader", *args], cwd=REPO, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _manifest_shards(out) >= 1 or proc.poll() is not None, 120, 0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    first = _manifest_shards(out)
    assert 1 <= first < 16, f"the driver was not killed mid-job ({first} shards)"
    kept = (out / "shard-000000.h5").stat().st_mtime_ns

    res = run_loader(*args, env=ENV, timeout=180)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("read 32, extracted 30, skipped 2 (") and f"resumed after row {2 * first}" in res.stdout
    assert (out / "shard-000000.h5").stat().st_mtime_ns == kept
    assert len(_read_shards(out)) == GOOD
    assert sorted(n for n, _, _ in (line.split("\t") for line in (out / "rejects.tsv").read_text().splitlines())) \
        == sorted(BAD)


def test_an_empty_source_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_loader("extract", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--engine", "ray",
                     "--model", MODEL, env=ENV)
    assert res.returncode == 1 and res.stderr.strip().splitlines()[-1].startswith("Error: no images in folder ")
    assert not (tmp_path / "out" / "manifest.json").exists()
    res = run_loader("extract", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out"), "--engine", "ray", env=ENV)
    assert res.returncode == 1 and "no such folder or file" in res.stderr


def test_a_list_file_names_images_as_written(images, tmp_path):
    from loader.sources import open_source

    listing = tmp_path / "list.txt"
    listing.write_text(f"# images\n{images}/img01.jpg\n\n{images}/sub/img00.png\n{images}/img01.jpg\n")
    src = open_source(str(listing))
    assert src.names() == [f"{images}/img01.jpg", f"{images}/sub/img00.png"]
    assert src.read(src.names()[0]) == (images / "img01.jpg").read_bytes()


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A local S3 server (moto, as the bulk-mode tests use), with bucket `images`."""
    from devstack.processes import free_port, port_open
    from minio import Minio

    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "s3.log", "w")
    s3 = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: port_open("127.0.0.1", port), 30, 0.1)
        Minio(f"127.0.0.1:{port}", access_key="k", secret_key="s", secure=False).make_bucket("images")
        yield f"127.0.0.1:{port}"
    finally:
        s3.terminate()
        s3.wait(timeout=10)
        log.close()


def test_an_s3_prefix_is_extracted_with_names_relative_to_it(ray_local, images, s3_endpoint, tmp_path,
                                                             monkeypatch):
    from minio import Minio

    from loader.ray_cli import s3_settings
    from loader.ray_job import extract_ray
    from loader.sources import open_source

    monkeypatch.setenv("S3_ACCESS_KEY", "k")
    monkeypatch.setenv("S3_SECRET_KEY", "s")
    client = Minio(s3_endpoint, access_key="k", secret_key="s", secure=False)
    files = sorted(p for p in images.rglob("*") if p.is_file())[:10]
    for p in files:
        client.fput_object("images", f"catalogue/{p.relative_to(images).as_posix()}", str(p))
    src = open_source("s3://images/catalogue/", s3_settings(s3_endpoint))
    summary = extract_ray(src, str(tmp_path / "out"), _options())
    listing = tmp_path / "list.txt"  # the same files named by a list (absolute paths)
    listing.write_text("".join(f"{p}\n" for p in files))
    local = extract_ray(open_source(str(listing)), str(tmp_path / "local"), _options())
    assert (summary.read, local.read) == (10, 10) and summary.imported == local.imported
    got = _read_shards(tmp_path / "out")
    want = {Path(n).relative_to(images).as_posix(): v for n, v in _read_shards(tmp_path / "local").items()}
    assert set(got) == set(want)
    assert max(float(np.abs(got[n] - want[n]).max()) for n in got) <= 1e-6


def test_index_chains_the_shards_into_the_import(ray_local, images, milvus_server, catalog, state_dir):
    from tests.loader.conftest import all_names

    args = ["index", str(images), "--engine", "ray", "--model", MODEL, "--ray-address", ray_local,
            "--shard-size", "16", "--milvus-uri", milvus_server.uri, "--collection", catalog.collection, "-q"]
    res = run_loader(*args, env=ENV, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "imported 30" in res.stdout and "image_not_an_image=1" in res.stdout, res.stdout
    assert catalog.count() == GOOD and len(set(all_names(catalog))) == GOOD
    assert catalog.fingerprint().startswith("efficientnet-lite0-")
