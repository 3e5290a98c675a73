"""`python -m loader duplicates`: near-duplicate groups of a collection, written as JSON lines or CSV.

The groups come from catalog/duplicates.py (the same code behind the search service's
`GET /v1/duplicates`): every image is searched through the index for neighbours at least `threshold`
similar, and linked images form groups. A progress bar counts the images searched.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from catalog import Catalog, CatalogError
from catalog.duplicates import find_groups
from loader.progress import Progress


def write_groups(catalog: Catalog, threshold: float, neighbours: int, fmt: str, output: str | Path | None,
                 quiet: bool) -> str:
    """Find the groups, write them to `output` (stdout when None); returns the summary line."""
    if not catalog.exists():
        raise CatalogError(f"collection {catalog.collection!r} does not exist: import images first")
    total = catalog.count()
    start = time.monotonic()
    with Progress(total, "searching", quiet) as bar:
        groups = find_groups(catalog, threshold, neighbours, progress=bar.update)
    opened = open(output, "w", newline="", encoding="utf-8") if output else nullcontext(sys.stdout)
    with opened as out:
        if fmt == "csv":
            writer = csv.writer(out)
            writer.writerow(["group", "name", "size", "best_score"])
            for i, g in enumerate(groups, 1):
                for name in g.names:
                    writer.writerow([i, name, len(g.names), f"{g.score:.6f}"])
        else:
            for g in groups:
                out.write(json.dumps(g.to_dict(), ensure_ascii=False) + "\n")
    images = sum(len(g.names) for g in groups)
    took = time.monotonic() - start
    return (f"searched {total} images in {took:.1f} s ({total / max(took, 1e-9):.0f}/s): {len(groups)} groups of "
            f"near-duplicates (threshold {threshold}) holding {images} images")
