"""Images -> HDF5 (classic layout) through the extractor service, several requests in flight.

Names are the image paths relative to the folder, with posix separators: the search service serves files
by those names from its IMAGE_ROOT. A rerun skips names already in the file, so an interrupted run
resumes. Images the extractor cannot use (or that cannot be read) are skipped and listed in
`<output>.skipped.tsv` (name, reason, message).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

from extractor_client import ExtractorClient, ExtractorRejected
from loader import hdf5
from loader.progress import Progress, Summary
from loader.state import default_state_dir

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def list_images(directory: str | Path) -> list[str]:
    """Image paths under `directory`, relative, posix separators, sorted (hidden files skipped)."""
    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"{directory}: no such folder; pass the folder that holds the images")
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(s.startswith(".") for s in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def work_file_for(directory: str | Path, state_dir: str | Path | None = None) -> Path:
    """The intermediate features file `loader index DIR` keeps (so a rerun resumes extraction)."""
    key = hashlib.sha1(str(Path(directory).resolve()).encode()).hexdigest()[:16]
    return Path(state_dir or default_state_dir()) / f"index-{key}.h5"


def _batches(names: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(names), size):
        yield names[i : i + size]


class _Extractor:
    """Reads a batch of files and asks the extractor; isolates a rejected image by retrying one by one."""

    def __init__(self, root: Path, client: ExtractorClient, fingerprint: str):
        self.root = root
        self.client = client
        self.fingerprint = fingerprint

    def __call__(self, names: list[str]) -> list[tuple[str, np.ndarray | None, str, str]]:
        """[(name, vector | None, reason, message)] for every name of the batch."""
        out: dict[str, tuple[str, np.ndarray | None, str, str]] = {}
        payload = []
        for name in names:
            try:
                payload.append((name, (self.root / name).read_bytes()))
            except OSError as exc:
                out[name] = (name, None, "unreadable", str(exc))
        if payload:
            try:
                results = [self._one_request(payload)]
            except ExtractorRejected:  # one bad part spoils the request: find it
                results = []
                for item in payload:
                    try:
                        results.append(self._one_request([item]))
                    except ExtractorRejected as exc:
                        out[item[0]] = (item[0], None, exc.code or "rejected", exc.message)
            for res in results:
                for name, vec, code, msg in res:
                    out[name] = (name, vec, code, msg)
        return [out[n] for n in names]

    def _one_request(self, payload: list[tuple[str, bytes]]) -> list[tuple[str, np.ndarray | None, str, str]]:
        batch = self.client.extract(payload)
        if batch.fingerprint != self.fingerprint:
            raise ExtractorRejected(
                409, "fingerprint_changed",
                f"the extractor's fingerprint changed from {self.fingerprint} to {batch.fingerprint} during the "
                "run (replicas with different weights?): point EXTRACTOR_URL at one model",
            )
        return [
            (name, item.vector, "", "") if item.ok else (name, None, item.error_code or "bad_image",
                                                       item.error_message or "")
            for (name, _), item in zip(payload, batch.items)
        ]


def extract_dir(
    directory: str | Path,
    output: str | Path,
    extractor_url: str,
    concurrency: int = 4,
    per_request: int = 8,
    quiet: bool = False,
    client: ExtractorClient | None = None,
) -> Summary:
    """Extract every image under `directory` not yet in `output`; returns the Summary of this run."""
    root = Path(directory)
    names = list_images(root)
    own_client = client is None
    client = client or ExtractorClient(extractor_url, pool_size=max(concurrency, 4))
    summary = Summary(verb="extracted")
    try:
        info = client.info()
        fingerprint, dim = str(info["fingerprint"]), int(info["dim"])
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        attrs = {hdf5.ATTR_FINGERPRINT: fingerprint, hdf5.ATTR_WEIGHTS: str(info.get("weights", ""))}
        with hdf5.ClassicWriter(output, dim) as writer:
            have_fp = writer.h5.attrs.get(hdf5.ATTR_FINGERPRINT)
            if writer.rows and have_fp is not None and hdf5._attr_text(have_fp) != fingerprint:
                raise hdf5.LayoutError(
                    f"{output}: holds features with fingerprint {hdf5._attr_text(have_fp)}, the extractor gives "
                    f"{fingerprint}: write to another -o file (or delete this one)"
                )
            for k, v in attrs.items():
                writer.h5.attrs[k] = v
            done = writer.names()
            todo = [n for n in names if n not in done]
            summary.read = summary.resumed_from = len(names) - len(todo)
            summary.imported = summary.read
            _run(root, todo, client, fingerprint, writer, concurrency, per_request, quiet, summary, output)
    finally:
        if own_client:
            client.close()
    return summary.stop()


def _run(root, todo, client, fingerprint, writer, concurrency, per_request, quiet, summary, output) -> None:
    work = _Extractor(root, client, fingerprint)
    skipped_path = Path(f"{output}.skipped.tsv")
    batches = _batches(todo, per_request)
    pending: set[Future] = set()
    with Progress(len(todo), "extracting", quiet) as bar, \
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="extract") as pool, \
            open(skipped_path, "a", encoding="utf-8") as skipped_log:
        try:
            while True:
                while len(pending) < 2 * concurrency:  # bounded: memory holds a few batches, not the folder
                    batch = next(batches, None)
                    if batch is None:
                        break
                    pending.add(pool.submit(work, batch))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results = fut.result()
                    good = [(n, v) for n, v, _, _ in results if v is not None]
                    writer.append([n for n, _ in good], np.stack([v for _, v in good]) if good else np.zeros((0, 1)))
                    for name, vec, reason, message in results:
                        if vec is None:
                            summary.skipped[reason] += 1
                            skipped_log.write(f"{name}\t{reason}\t{' '.join(message.split())}\n")
                            if not quiet:
                                log.warning("skipped %s: %s (%s)", name, reason, message)
                    summary.read += len(results)
                    summary.imported += len(good)
                    bar.update(len(results))
                skipped_log.flush()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
