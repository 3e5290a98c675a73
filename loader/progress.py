"""Progress bar and summary: what a person at a terminal sees, and the one line a script parses."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm


class Progress:
    """A tqdm bar (rows, rows/s, ETA) as a context manager; does nothing when quiet or not on a terminal."""

    def __init__(self, total: int | None, desc: str, quiet: bool = False, initial: int = 0):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=" rows", unit_scale=True,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Summary:
    """Counts of one run (or of a whole file across resumed runs) and its timing."""

    read: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # until the data is durable (flushed)
    index_seconds: float | None = None  # index build + load, reported on its own
    resumed_from: int = 0
    verb: str = "imported"
    extra: dict = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def stop(self) -> "Summary":
        self.seconds = time.monotonic() - self._t0
        return self

    @property
    def rows_per_s(self) -> float:
        done = self.read - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """`read 10,000, imported 9,990, skipped 10 (nan_or_inf=3, duplicate_name=7), 1.2 s, 8,325 rows/s`."""
        total_skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
        text = f"read {self.read:,}, {self.verb} {self.imported:,}, skipped {total_skipped:,}"
        if reasons:
            text += f" ({reasons})"
        text += f", {self.seconds:.1f} s, {self.rows_per_s:,.0f} rows/s"
        if self.index_seconds is not None:
            text += f", index+load {self.index_seconds:.1f} s"
        if self.resumed_from:
            text += f" (resumed after row {self.resumed_from:,})"
        for k, v in self.extra.items():
            text += f", {k} {v}"
        return text
