"""The output of `extract --engine ray`: a folder of HDF5 shards in the classic layout and a manifest.

    OUT/manifest.json       fingerprint, dim, weights, and one entry per finished shard (file, rows, rejects)
    OUT/shard-000000.h5     dataset_1 vectors, dataset_2 names, attrs fingerprint/dim/weights (hdf5.py)
    OUT/rejects.tsv         name, reason, message of every image that could not be used (from the manifest)

A shard is written under a temporary name, fsynced and renamed; then the manifest, which lists it, is
replaced the same way. The manifest is the commit point: a shard file it does not list (the driver died
between the two renames) is deleted on the next run and its images extracted again, so a rerun after a
crash skips exactly the finished shards, and no image is in two shards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loader import hdf5

MANIFEST = "manifest.json"
REJECTS = "rejects.tsv"
VERSION = 1


@dataclass
class Manifest:
    """What OUT holds: the vectors' fingerprint and the finished shards (the commit record of a run)."""

    fingerprint: str
    dim: int
    weights: str = ""
    source: str = ""
    shards: list[dict] = field(default_factory=list)  # {"file", "rows", "rejects": [[name, reason, message]]}

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def rejects(self) -> list[list[str]]:
        return [r for s in self.shards for r in s["rejects"]]

    def next_index(self) -> int:
        return 1 + max((int(s["file"][len("shard-"):-len(".h5")]) for s in self.shards), default=-1)

    def to_json(self) -> dict:
        return {"version": VERSION, "fingerprint": self.fingerprint, "dim": self.dim, "weights": self.weights,
                "source": self.source, "shards": self.shards}


def load_manifest(out: Path) -> Manifest | None:
    """OUT's manifest, or None when OUT has none yet; LayoutError when it is not ours."""
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Manifest(data["fingerprint"], int(data["dim"]), data.get("weights", ""), data.get("source", ""),
                        list(data["shards"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise hdf5.LayoutError(f"{path}: not a manifest of `loader extract --engine ray` ({exc}): write to "
                               "another -o folder") from None


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.h5"


def _replace(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it over `final`, fsync the folder: after this, `final` survives a crash."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardFolder:
    """OUT: opened (or created) for one fingerprint; finished shards are committed one by one."""

    def __init__(self, out: str | Path, fingerprint: str, dim: int, weights: str = "", source: str = ""):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise hdf5.LayoutError(f"{self.out}: is a file; with --engine ray, -o names a folder for the shards")
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest = load_manifest(self.out) or Manifest(fingerprint, dim, weights, source)
        if self.manifest.fingerprint != fingerprint or self.manifest.dim != dim:
            raise hdf5.LayoutError(
                f"{self.out}: holds {self.manifest.dim}-d vectors with fingerprint {self.manifest.fingerprint}, the "
                f"model gives {dim}-d with {fingerprint}: write to another -o folder (or delete this one)")
        self._remove_uncommitted()

    def _remove_uncommitted(self) -> None:
        """Shard files the manifest does not list, and temporary files: what a killed run left half done."""
        listed = {s["file"] for s in self.manifest.shards}
        for path in self.out.glob("shard-*.h5*"):
            if path.name not in listed:
                path.unlink()
        (self.out / f"{MANIFEST}.tmp").unlink(missing_ok=True)

    def done_names(self) -> set[str]:
        """Names in finished shards, vectors and rejects alike: a rerun skips them."""
        done = {r[0] for r in self.manifest.rejects}
        for s in self.manifest.shards:
            layout = hdf5.open_layout(self.out / s["file"])
            for _, names in hdf5.iter_names(layout):
                done.update(n.decode("utf-8", "surrogateescape") for n in names)
        return done

    def commit(self, names: list[str], vectors: np.ndarray, rejects: list[tuple[str, str, str]]) -> str:
        """Write one shard (atomically), then list it in the manifest (atomically); returns its file name."""
        name = shard_name(self.manifest.next_index())
        tmp, final = self.out / f"{name}.tmp", self.out / name
        attrs = {hdf5.ATTR_FINGERPRINT: self.manifest.fingerprint, hdf5.ATTR_WEIGHTS: self.manifest.weights}
        with hdf5.ClassicWriter(tmp, self.manifest.dim, attrs) as writer:
            writer.append(names, vectors.reshape(len(names), self.manifest.dim))
        _replace(tmp, final)
        self.manifest.shards.append({"file": name, "rows": len(names),
                                     "rejects": [[n, r, " ".join(m.split())] for n, r, m in rejects]})
        self._save_manifest()
        return name

    def _save_manifest(self) -> None:
        tmp = self.out / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest.to_json(), indent=1))
        _replace(tmp, self.out / MANIFEST)

    def write_rejects(self) -> Path:
        """OUT/rejects.tsv from the manifest (name, reason, message), replaced atomically."""
        path, tmp = self.out / REJECTS, self.out / f"{REJECTS}.tmp"
        tmp.write_text("".join(f"{n}\t{r}\t{m}\n" for n, r, m in self.manifest.rejects), encoding="utf-8")
        _replace(tmp, path)
        return path
