"""The classic HDF5 feature layout: THE place that reads and writes it.

Classic layout (what the original query script reads with `h5f['dataset_1'][:]`, `h5f['dataset_2'][:]`):

    dataset_1   float32 N x D   one feature vector per row
    dataset_2   N names         fixed-length bytes (`np.bytes_` / old `np.string_`), row i names row i

Accepted on read as well: variable-length string or bytes names, names and vectors under other dataset
names (chosen with `vectors=` / `names=`, or auto-detected when exactly one candidate of each exists),
datasets inside groups ("features/vectors"), and variable-length float rows (checked per row).

Files written by `loader extract` also carry the attributes `fingerprint`, `dim` and `weights`, plus
`complete_rows` (rows fully written; a rerun truncates anything past it, so an interrupted write resumes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

CLASSIC_VECTORS = "dataset_1"
CLASSIC_NAMES = "dataset_2"
ATTR_FINGERPRINT = "fingerprint"
ATTR_DIM = "dim"
ATTR_WEIGHTS = "weights"
ATTR_COMPLETE_ROWS = "complete_rows"


class LayoutError(Exception):
    """The file is missing, unreadable, or its datasets are not a vectors + names pair we can use."""


@dataclass
class Layout:
    """Which datasets of a file hold the vectors and the names, and what the file says about them."""

    path: Path
    vectors: str
    names: str
    rows: int
    dim: int | None  # None for variable-length vector rows until a row is seen
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        """The feature fingerprint recorded in the file, or None (classic files have none)."""
        return self.attrs.get(ATTR_FINGERPRINT) or None


@dataclass
class Chunk:
    """Rows [start, start + len(names)) of a file: raw names (bytes) and vectors."""

    start: int
    names: list[bytes]
    vectors: np.ndarray | list[np.ndarray]  # 2-D float array, or per-row arrays for vlen datasets


# -- reading ----------------------------------------------------------------------------------------
def _datasets(h5: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    h5.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _is_vlen_float(ds: h5py.Dataset) -> bool:
    base = h5py.check_vlen_dtype(ds.dtype)
    return base is not None and np.issubdtype(base, np.floating)


def _is_vectors(ds: h5py.Dataset) -> bool:
    if ds.ndim == 2 and np.issubdtype(ds.dtype, np.floating):
        return True
    return ds.ndim == 1 and _is_vlen_float(ds)


def _is_names(ds: h5py.Dataset) -> bool:
    if ds.ndim != 1:
        return False
    if ds.dtype.kind in ("S", "U"):
        return True
    base = h5py.check_string_dtype(ds.dtype) or h5py.check_vlen_dtype(ds.dtype)
    return base is not None and not _is_vlen_float(ds)


def _describe(found: dict[str, h5py.Dataset]) -> str:
    if not found:
        return "none"
    return ", ".join(f"{name} {ds.dtype} {ds.shape}" for name, ds in sorted(found.items()))


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _attr_text(value.item())
    return str(value)


def open_layout(path: str | Path, vectors: str | None = None, names: str | None = None) -> Layout:
    """Find the vectors and names datasets of `path`; raise LayoutError naming what to do."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"{path}: no such file; check the path")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise LayoutError(f"{path}: not a readable HDF5 file ({exc}); pass a .h5 file") from exc
    with h5:
        found = _datasets(h5)
        listing = _describe(found)
        hint = f"datasets found: {listing}; choose them with --vectors NAME --names NAME"
        for given, what in ((vectors, "vectors"), (names, "names")):
            if given is not None and given.strip("/") not in found:
                raise LayoutError(f"{path}: no dataset {given!r} for the {what}; {hint}")
        vec_name = vectors.strip("/") if vectors else None
        name_name = names.strip("/") if names else None
        if vec_name is None and name_name is None and CLASSIC_VECTORS in found and CLASSIC_NAMES in found:
            vec_name, name_name = CLASSIC_VECTORS, CLASSIC_NAMES
        def only(fits, other: str | None, kind: str, role: str) -> str:
            """The one dataset that `fits` (other than `other`), else a LayoutError listing them all."""
            cands = [n for n, ds in found.items() if fits(ds) and n != other]
            if len(cands) != 1:
                why = f"no {kind} dataset" if not cands else f"several {kind} datasets"
                raise LayoutError(f"{path}: cannot tell which dataset holds the {role} ({why}); {hint}")
            return cands[0]

        if vec_name is None:
            vec_name = only(_is_vectors, name_name, "float", "vectors")
        if name_name is None:
            name_name = only(_is_names, vec_name, "string", "names")
        vds, nds = found[vec_name], found[name_name]
        if not _is_vectors(vds):
            raise LayoutError(
                f"{path}: dataset {vec_name!r} ({vds.dtype} {vds.shape}) is not an N x D float array; {hint}"
            )
        if not _is_names(nds):
            raise LayoutError(
                f"{path}: dataset {name_name!r} ({nds.dtype} {nds.shape}) is not a list of names; {hint}"
            )
        if vds.shape[0] != nds.shape[0]:
            raise LayoutError(
                f"{path}: {vds.shape[0]} vectors in {vec_name!r} but {nds.shape[0]} names in {name_name!r}; "
                "row i of one must match row i of the other: fix the file or choose datasets with "
                "--vectors/--names"
            )
        attrs = {k: _attr_text(v) for k, v in h5.attrs.items()}
        rows = int(vds.shape[0])
        if ATTR_COMPLETE_ROWS in attrs:  # a file `extract` was still writing: only complete rows count
            rows = min(rows, int(attrs[ATTR_COMPLETE_ROWS]))
        dim = int(vds.shape[1]) if vds.ndim == 2 else None
        return Layout(path=path, vectors=vec_name, names=name_name, rows=rows, dim=dim, attrs=attrs)


def _raw_names(values: np.ndarray) -> list[bytes]:
    """Names as bytes whatever their HDF5 type (fixed bytes, vlen bytes/str, numpy unicode)."""
    out: list[bytes] = []
    for v in values:
        if isinstance(v, bytes):
            out.append(v)
        elif isinstance(v, str):
            out.append(v.encode("utf-8", "surrogateescape"))
        elif isinstance(v, np.bytes_):
            out.append(bytes(v))
        else:
            out.append(str(v).encode("utf-8", "surrogateescape"))
    return out


def iter_names(layout: Layout, chunk_rows: int = 100_000, start: int = 0) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (start row, raw names) in chunks; names only (cheap: no vectors read)."""
    with h5py.File(layout.path, "r") as h5:
        ds = h5[layout.names]
        for s in range(start, layout.rows, chunk_rows):
            yield s, _raw_names(ds[s : min(s + chunk_rows, layout.rows)])


def iter_chunks(layout: Layout, chunk_rows: int = 10_000, start: int = 0) -> Iterator[Chunk]:
    """Yield the rows from `start` on in chunks of `chunk_rows`: memory stays at one chunk."""
    with h5py.File(layout.path, "r") as h5:
        vds, nds = h5[layout.vectors], h5[layout.names]
        for s in range(start, layout.rows, chunk_rows):
            e = min(s + chunk_rows, layout.rows)
            raw = vds[s:e]
            vectors = raw.astype(np.float32, copy=False) if raw.ndim == 2 else [np.asarray(r) for r in raw]
            yield Chunk(start=s, names=_raw_names(nds[s:e]), vectors=vectors)


# -- writing (used by `loader extract`) --------------------------------------------------------------
class ClassicWriter:
    """Appends rows to a classic-layout file; reopening an existing file resumes after its complete rows.

    Names are fixed-length bytes (what old readers expect); when a longer name arrives, the names dataset
    is rewritten once with a wider type. After each `append` the file is flushed and `complete_rows`
    updated, so a killed run leaves at most the last batch unaccounted for, and a rerun drops it.
    """

    def __init__(self, path: str | Path, dim: int, attrs: dict[str, str] | None = None):
        self.path = Path(path)
        self.dim = dim
        try:
            self.h5 = h5py.File(self.path, "a")
        except OSError as exc:
            raise LayoutError(
                f"{self.path}: cannot open for writing ({exc}); it may be damaged by an interrupted write: "
                "delete it, or write to another -o file"
            ) from exc
        if CLASSIC_VECTORS in self.h5:
            have = self.h5[CLASSIC_VECTORS].shape[1]
            if have != dim:
                self.h5.close()
                raise LayoutError(
                    f"{self.path}: holds {have}-d vectors, the extractor gives {dim}-d: write to another -o file"
                )
            done = int(self.h5.attrs.get(ATTR_COMPLETE_ROWS, self.h5[CLASSIC_VECTORS].shape[0]))
            for name in (CLASSIC_VECTORS, CLASSIC_NAMES):
                self.h5[name].resize(done, axis=0)  # drop rows of a write that did not finish
        else:
            self.h5.create_dataset(
                CLASSIC_VECTORS, shape=(0, dim), maxshape=(None, dim), dtype="float32", chunks=(256, dim)
            )
            self.h5.create_dataset(CLASSIC_NAMES, shape=(0,), maxshape=(None,), dtype="S64", chunks=(4096,))
            self.h5.attrs[ATTR_COMPLETE_ROWS] = 0
        for k, v in (attrs or {}).items():
            self.h5.attrs[k] = v
        self.h5.attrs[ATTR_DIM] = dim
        self.h5.flush()

    @property
    def rows(self) -> int:
        return int(self.h5.attrs[ATTR_COMPLETE_ROWS])

    def names(self) -> set[str]:
        """Names already in the file (a rerun skips these images)."""
        raw = self.h5[CLASSIC_NAMES][: self.rows]
        return {bytes(n).decode("utf-8", "surrogateescape") for n in raw}

    def _widen_names(self, itemsize: int) -> None:
        old = self.h5[CLASSIC_NAMES]
        data = old[:]
        del self.h5[CLASSIC_NAMES]
        new = self.h5.create_dataset(
            CLASSIC_NAMES, shape=data.shape, maxshape=(None,), dtype=f"S{itemsize}", chunks=(4096,)
        )
        new[:] = data.astype(f"S{itemsize}")

    def append(self, names: list[str], vectors: np.ndarray) -> None:
        """Append rows and make them durable (flush + complete_rows)."""
        if not names:
            return
        encoded = [n.encode("utf-8", "surrogateescape") for n in names]
        width = max(len(b) for b in encoded)
        if width > self.h5[CLASSIC_NAMES].dtype.itemsize:
            self._widen_names(max(width, 2 * self.h5[CLASSIC_NAMES].dtype.itemsize))
        n0, n1 = self.rows, self.rows + len(names)
        for name in (CLASSIC_VECTORS, CLASSIC_NAMES):
            self.h5[name].resize(n1, axis=0)
        self.h5[CLASSIC_VECTORS][n0:n1] = np.asarray(vectors, dtype=np.float32)
        self.h5[CLASSIC_NAMES][n0:n1] = np.array(encoded, dtype=self.h5[CLASSIC_NAMES].dtype)
        self.h5.flush()
        self.h5.attrs[ATTR_COMPLETE_ROWS] = n1
        self.h5.flush()

    def close(self) -> None:
        """Trim to the complete rows and close."""
        if self.h5.id.valid:
            self.h5.close()

    def __enter__(self) -> "ClassicWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def names_at(layout: Layout, rows: list[int], chunk_rows: int = 100_000) -> list[bytes]:
    """Raw names of the given (sorted) rows, read chunk by chunk."""
    wanted = np.asarray(rows, dtype=np.int64)
    out: list[bytes] = []
    for start, names in iter_names(layout, chunk_rows):
        lo, hi = np.searchsorted(wanted, [start, start + len(names)])
        out.extend(names[int(r) - start] for r in wanted[lo:hi])
    return out
