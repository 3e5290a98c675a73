"""Per-image metadata from a side file (`--meta FILE`): stored as each row's `meta`, and copied into the
collection's declared scalar fields for fast filters.

Two layouts, chosen by the file's suffix:

- JSON lines (`.jsonl`, `.json`): one object per line with a `name` key; the other keys are the meta
  (`{"name": "shoes/1.jpg", "category": "shoes", "price": 49.9}`);
- CSV (`.csv`): a header row with a `name` column; the other columns are the meta (text, or numbers
  when the whole cell is one).

Names not in the file get `{}`. The whole file is read into memory (about 200 bytes a row: 10M rows is
about 2 GB), so split very large imports or keep meta small.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from catalog import schema as S

MAX_META_BYTES = 16 * 1024  # as the search service's POST /v1/images


class MetaError(ValueError):
    """The meta file cannot be used; the message names the file, line and problem."""


class MetaFile:
    """Name -> meta dict, read from a JSON lines or CSV file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise MetaError(f"{self.path}: no such meta file")
        reader = self._read_csv if self.path.suffix.lower() == ".csv" else self._read_jsonl
        self.by_name: dict[str, dict] = {}
        for line, name, meta in reader():
            if not isinstance(name, str) or not name:
                raise MetaError(f"{self.path}:{line}: each row needs a non-empty string 'name'")
            if len(json.dumps(meta)) > MAX_META_BYTES:
                raise MetaError(f"{self.path}:{line}: meta of {name!r} is larger than {MAX_META_BYTES} bytes")
            self.by_name[name] = meta

    def lookup(self, names: list[str]) -> list[dict]:
        """The meta of each name ({} when the file has none)."""
        return [self.by_name.get(n, {}) for n in names]

    def _read_jsonl(self):
        with open(self.path, encoding="utf-8") as f:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except ValueError as exc:
                    raise MetaError(f"{self.path}:{line}: not JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise MetaError(f"{self.path}:{line}: each line must be a JSON object")
                name = row.pop(S.NAME_FIELD, None)
                yield line, name, row

    def _read_csv(self):
        with open(self.path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or S.NAME_FIELD not in reader.fieldnames:
                raise MetaError(f"{self.path}: the header row needs a '{S.NAME_FIELD}' column")
            for line, row in enumerate(reader, 2):
                name = row.pop(S.NAME_FIELD)
                yield line, name, {k: _cell(v) for k, v in row.items() if k is not None and v not in (None, "")}


def _cell(text: str):
    """A CSV cell: an int or float when the whole cell is one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
