"""What an import reads: the file's layout, dimension, fingerprint and repeated names, and its checked
chunks. Shared by both write paths (insert mode in loader.importer, bulk mode in loader.bulk)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from loader import hdf5
from loader.meta import MetaFile
from loader.options import ImportOptions
from loader.validate import CheckedChunk, check_chunk, duplicate_rows


@dataclass
class Source:
    """What the file says before anything is written: layout, dimension, fingerprint, duplicate rows."""

    layout: hdf5.Layout
    dim: int
    fingerprint: str | None
    duplicates: set[int]
    created: bool = False  # the collection was created by this import (so it held none of these names)
    meta: MetaFile | None = None  # per-name meta from --meta
    scalars: dict[str, str] = field(default_factory=dict)  # the collection's declared scalar fields

    def metas(self, names: list[str]) -> list[dict] | None:
        """The meta of each name from --meta, or None without a meta file (rows get {})."""
        return self.meta.lookup(names) if self.meta is not None else None


def inspect_file(path: str | Path, opts: ImportOptions, dim_hint: int | None = None) -> Source:
    """Open the file, pick its datasets, and find repeated names (names only: cheap)."""
    layout = hdf5.open_layout(path, opts.vectors, opts.names)
    dim = layout.dim or dim_hint or _first_row_dim(layout)
    dups = duplicate_rows(hdf5.iter_names(layout), lambda rows: hdf5.names_at(layout, rows))
    meta = MetaFile(opts.meta) if opts.meta else None
    return Source(layout=layout, dim=dim, fingerprint=opts.fingerprint or layout.fingerprint, duplicates=dups,
                  meta=meta)


def _first_row_dim(layout: hdf5.Layout) -> int:
    attr = layout.attrs.get(hdf5.ATTR_DIM)
    if attr and attr.isdigit():
        return int(attr)
    with h5py.File(layout.path, "r") as h5:
        ds = h5[layout.vectors]
        return len(ds[0]) if ds.shape[0] else 0


def checked_chunks(src: Source, start: int, chunk_rows: int) -> Iterator[tuple[int, CheckedChunk]]:
    """Yield (end row, checked chunk) for the rows from `start` on."""
    for chunk in hdf5.iter_chunks(src.layout, chunk_rows, start):
        yield chunk.start + len(chunk.names), check_chunk(
            chunk.start, chunk.names, chunk.vectors, src.dim, src.duplicates
        )
