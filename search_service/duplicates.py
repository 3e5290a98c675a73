"""Near-duplicate groups for `GET /v1/duplicates`: found in the background, served in pages.

Finding groups searches every image of the catalogue (catalog/duplicates.py): minutes for 100k images, far
longer than a request may take. So the first request for a threshold starts a job on a background thread
and answers 202 with its progress; later requests page through the finished groups. A result is reused
while the catalogue's size is unchanged, no write went through this service, and it is younger than
`ttl` seconds; otherwise the next request starts a fresh job. At most `keep` thresholds are kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from catalog.duplicates import Group, find_groups

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One threshold's groups: computing (`groups` None) or done; `error` when it failed."""

    threshold: float
    count: int  # catalogue size when it started
    generation: int  # the service's write counter when it started
    started: float = field(default_factory=time.monotonic)
    scanned: int = 0
    groups: list[Group] | None = None
    error: str | None = None
    finished: float | None = None


class DuplicateFinder:
    """Background jobs of `find_groups`, one per threshold, their results cached (see module doc)."""

    def __init__(self, catalog, neighbours: int = 16, ttl: float = 600.0, keep: int = 4):
        self.catalog = catalog
        self.neighbours = neighbours
        self.ttl = ttl
        self.keep = keep
        self.generation = 0  # bumped by every write through this service
        self._jobs: OrderedDict[float, Job] = OrderedDict()
        self._lock = threading.Lock()

    def changed(self) -> None:
        """The catalogue changed through this service: cached groups are stale."""
        with self._lock:
            self.generation += 1

    def job(self, threshold: float, count: int) -> Job:
        """The job for `threshold`: a fresh finished one, the one running, or a new one just started."""
        with self._lock:
            job = self._jobs.get(threshold)
            if job is not None and not self._stale(job, count):
                self._jobs.move_to_end(threshold)
                return job
            job = Job(threshold, count, self.generation)
            self._jobs[threshold] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job,), name=f"duplicates-{threshold}", daemon=True).start()
        return job

    def _stale(self, job: Job, count: int) -> bool:
        if job.groups is None and job.error is None:
            return False  # still running: never start a second one for the same threshold
        return (job.error is not None or job.count != count or job.generation != self.generation
                or time.monotonic() - (job.finished or 0) > self.ttl)

    def _run(self, job: Job) -> None:
        def progress(n: int) -> None:
            job.scanned += n

        try:
            groups = find_groups(self.catalog, job.threshold, self.neighbours, progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported to the next request, which may start again
            log.warning("near-duplicate search at %.3f failed: %s", job.threshold, exc)
            job.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            job.groups = groups
        job.finished = time.monotonic()
