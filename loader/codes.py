"""Binary modes at import: the projection learned from a sample of the file, read by streaming.

The sample is evenly spaced blocks of checked (validated, L2-normalised) rows, so a 20 GB file is never
read whole and memory stays bounded: at most SAMPLE_BYTES of vectors, whatever the file's size.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from catalog.binary_codes import Projection, check_bits, train_itq
from loader.source import Source, checked_chunks

log = logging.getLogger(__name__)

SAMPLE_ROWS = 100_000  # default of --code-sample: plenty for a dim x bits projection
SAMPLE_BYTES = 256 << 20  # the sample's vectors stay under this (fewer rows for wide vectors)
BLOCKS = 100  # the sample is this many evenly spaced runs of rows


def sample_vectors(src: Source, rows: int = SAMPLE_ROWS) -> np.ndarray:
    """Up to `rows` checked vectors from BLOCKS evenly spaced places in the file (all of a small file)."""
    total = src.layout.rows
    rows = max(1, min(rows, total, SAMPLE_BYTES // (4 * max(1, src.dim))))
    block = max(1, -(-rows // BLOCKS))
    starts = np.linspace(0, max(0, total - block), num=min(BLOCKS, -(-rows // block)), dtype=np.int64)
    out = np.empty((rows, src.dim), dtype=np.float32)  # filled in place: no second copy of the sample
    have = 0
    for start in dict.fromkeys(int(s) for s in starts):
        for _, checked in checked_chunks(src, start, block):
            take = min(len(checked.vectors), rows - have)
            out[have:have + take] = checked.vectors[:take]
            have += take
            break  # one chunk per place
        if have == rows:
            break
    if have == 0:
        raise ValueError(f"{src.layout.path}: no valid vector to learn binary codes from")
    return out[:have]


def train_projection(src: Source, bits: int, rows: int = SAMPLE_ROWS, seed: int = 0) -> Projection:
    """An ITQ projection for `bits`-bit codes learned from a sample of `src`; ValueError says what is wrong."""
    check_bits(bits, src.dim)
    t0 = time.monotonic()
    sample = sample_vectors(src, rows)
    projection = train_itq(sample, bits, seed=seed)
    log.info("learned %d-bit ITQ codes from %d vectors in %.1f s", bits, len(sample), time.monotonic() - t0)
    return projection
