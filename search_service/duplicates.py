"""Near-duplicate groups for `GET /v1/duplicates`: found in the background, served in pages.

Finding groups searches every image of the catalogue (catalog/duplicates.py): minutes for 100k images, far
longer than a request may take. So the first request for a threshold starts a job on a background thread
and answers 202 with its progress; later requests page through the finished groups. A result is reused
while the catalogue's size is unchanged, no write went through this service, and it is younger than
`ttl` seconds; otherwise the next request starts a fresh job. At most `keep` thresholds are kept.

The service runs several worker processes and a client's requests land on any of them, so jobs live in
the workers' shared directory (search_service/shared_state.py), not in one worker's memory: the worker
that starts a threshold's job holds that threshold's lock while it runs (no second worker starts the same
job; a killed worker's lock goes with it, and the next request starts again), publishes its progress and
its groups as a record, and every worker serves pages from the record.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from catalog.duplicates import Group, find_groups
from search_service.shared_state import SharedDir

log = logging.getLogger(__name__)

# Seconds between progress records while a job runs (each is a small file write).
PROGRESS_EVERY_S = 0.5
WRITES = "writes"  # the shared counter of writes through the service


@dataclass
class Job:
    """One threshold's groups: computing (`groups` None) or done; `error` when it failed. Times are wall
    clock (time.time()): they are compared across processes."""

    threshold: float
    count: int  # catalogue size when it started
    generation: int  # the service's write counter when it started
    started: float = field(default_factory=time.time)
    scanned: int = 0
    groups: list[Group] | None = None
    error: str | None = None
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.groups is None and self.error is None

    def to_record(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "count": self.count, "generation": self.generation,
                "started": self.started, "scanned": self.scanned, "error": self.error, "finished": self.finished,
                "groups": None if self.groups is None else [[g.names, g.score, g.pairs] for g in self.groups]}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Job":
        groups = rec.get("groups")
        return cls(threshold=float(rec["threshold"]), count=int(rec["count"]), generation=int(rec["generation"]),
                   started=float(rec["started"]), scanned=int(rec.get("scanned") or 0), error=rec.get("error"),
                   finished=rec.get("finished"),
                   groups=None if groups is None else [Group(list(n), float(s), int(p)) for n, s, p in groups])


def _record_name(threshold: float) -> str:
    return f"duplicates-{threshold:.6f}"


class DuplicateFinder:
    """Background jobs of `find_groups`, one per threshold across all workers, their results cached in
    the shared directory (see module doc)."""

    def __init__(self, catalog, neighbours: int = 16, ttl: float = 600.0, keep: int = 4,
                 shared: SharedDir | None = None):
        self.catalog = catalog
        self.neighbours = neighbours
        self.ttl = ttl
        self.keep = keep
        self.shared = shared or SharedDir.temporary()
        self._lock = threading.Lock()
        self._running: dict[str, Job] = {}  # jobs this process runs: their progress is live here
        self._parsed: dict[str, tuple[tuple[int, int], Job]] = {}  # record name -> (file identity, job)

    @property
    def generation(self) -> int:
        """How many writes went through the service (every worker's)."""
        return self.shared.counter(WRITES)

    def changed(self) -> None:
        """The catalogue changed through this service: cached groups are stale."""
        self.shared.bump(WRITES)

    def job(self, threshold: float, count: int) -> Job:
        """The job for `threshold`: a fresh finished one, the one running (here or in another worker), or
        a new one just started."""
        name = _record_name(threshold)
        generation = self.generation
        with self._lock:
            if name in self._running:
                return self._running[name]
            known = self._load(name)
            if known is not None and not self._stale(known, count, generation, name):
                return known
            held = self.shared.try_lock(name)
            if held is None:  # another worker runs it; its record may not be written yet
                return known if known is not None and known.running else Job(threshold, count, generation)
            # Ours now; it may have finished between the read and the lock.
            known = self._load(name)
            if known is not None and not known.running and not self._stale(known, count, generation, name):
                SharedDir.release(held)
                return known
            job = Job(threshold, count, generation)
            self._running[name] = job
        try:
            self.shared.write_json(name, job.to_record())
            self._prune(keep_name=name)
            threading.Thread(target=self._run, args=(job, name, held), name=f"duplicates-{threshold}",
                             daemon=True).start()
        except BaseException:
            with self._lock:
                self._running.pop(name, None)
            SharedDir.release(held)
            raise
        return job

    def _load(self, name: str) -> Job | None:
        """The record `name` as a Job, parsed once per version of the file (pages are served from it)."""
        try:
            st = os.stat(self.shared.path(name + ".json"))
        except FileNotFoundError:
            self._parsed.pop(name, None)
            return None
        ident = (st.st_ino, st.st_mtime_ns)
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == ident:
            return cached[1]
        got = self.shared.read_json(name)
        if got is None:
            return None
        job = Job.from_record(got[0])
        self._parsed[name] = (ident, job)
        return job

    def _stale(self, job: Job, count: int, generation: int, name: str) -> bool:
        if job.running:
            # Running in a worker that holds the lock: never start a second one. A running record whose
            # lock nobody holds was left by a worker that died.
            return not self.shared.is_locked(name)
        return (job.error is not None or job.count != count or job.generation != generation
                or time.time() - (job.finished or 0) > self.ttl)

    def _prune(self, keep_name: str) -> None:
        """Drop the oldest records beyond `keep` (never the one just started, nor one still running: its
        worker would write it again when it finishes)."""
        others = [n for n, _ in self.shared.records("duplicates-")
                  if n != keep_name and not self.shared.is_locked(n)]
        for n in others[:max(0, len(others) - (self.keep - 1))]:
            self.shared.remove(n)

    def _run(self, job: Job, name: str, held: IO[bytes]) -> None:
        last = [time.monotonic()]

        def progress(n: int) -> None:
            job.scanned += n
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                self.shared.write_json(name, job.to_record())

        # The outcome goes into a copy first: the in-memory job, which this worker serves while it is in
        # `_running`, turns finished only once its record is written and it has left `_running`. Otherwise a
        # request could see it finished, write, and get these groups back as fresh.
        outcome = Job(job.threshold, job.count, job.generation, started=job.started)
        try:
            try:
                outcome.groups = find_groups(self.catalog, job.threshold, self.neighbours, progress=progress)
            except Exception as exc:  # noqa: BLE001 - reported to the next request, which may start again
                log.warning("near-duplicate search at %.3f failed: %s", job.threshold, exc)
                outcome.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            outcome.scanned, outcome.finished = job.scanned, time.time()
            self.shared.write_json(name, outcome.to_record())
        except Exception:  # noqa: BLE001 - the record could not be written: the next request starts again
            log.exception("near-duplicate job at %.3f: its record could not be written", job.threshold)
        finally:
            # The lock goes first, so that whoever sees this job finished also sees it no longer running.
            SharedDir.release(held)
            with self._lock:
                self._running.pop(name, None)
                job.groups, job.error, job.finished = outcome.groups, outcome.error, outcome.finished
                if job.running:  # stopped before an outcome (interrupted): callers holding it see it failed
                    job.error = "the near-duplicate job stopped before it finished"
