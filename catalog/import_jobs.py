"""Server-side import jobs of one collection: start one for a set of files, follow it, find it again.

The loader's bulk mode is the user. What a task's state means is given as a `Phase`, so callers never
match the server's state names; the calls, state names and restart behaviour are Milvus 2.3's
(catalog.milvus23 says which and why). Every call raises the typed errors of catalog.errors and is retried
with catalog.retry for up to `retry_seconds` while Milvus comes back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from catalog import milvus23
from catalog.retry import with_retry
from catalog.store import Catalog


class Phase(enum.Enum):
    """Where a task is, as far as its caller cares."""

    RUNNING = "running"  # queued or importing
    READ = "read"  # every file read and the rows persisted: the files may go; completion follows
    COMPLETED = "completed"  # the rows are in the collection
    FAILED = "failed"  # nothing imported (a failed import leaves no rows)


@dataclass(frozen=True)
class TaskState:
    """One look at a task."""

    task: int
    name: str  # the server's own state name
    phase: Phase
    reason: str = ""  # why it failed
    rows: int = 0  # rows imported so far

    @property
    def restarted(self) -> bool:
        """Failed because the server restarted under it: not the job's fault."""
        return self.phase is Phase.FAILED and milvus23.failed_by_restart(self.reason)


def phase_of(name: str) -> Phase:
    """The Phase of a server state name."""
    if name in milvus23.COMPLETED_STATES:
        return Phase.COMPLETED
    if name in milvus23.PERSISTED_STATES:
        return Phase.READ
    if name in milvus23.FAILED_STATES:
        return Phase.FAILED
    return Phase.RUNNING


class ImportJobs:
    """Import jobs of `catalog`'s collection (a connection of their own; close() it)."""

    def __init__(self, catalog: Catalog, retry_seconds: float = 0.0):
        self.collection = catalog.collection
        self.retry_seconds = retry_seconds
        self.api = milvus23.OrmBulkInsert(catalog.uri, catalog.token, catalog.timeout)

    def submit(self, files: list[str], newer_than: int = -1) -> int:
        """Start an import job for `files` (server paths or object keys); returns its task id.

        A call retried after the server went away may have started the task already, its reply lost: a
        task for these files newer than `newer_than` is returned instead of starting another.
        """

        def once() -> int:
            found = self._find(files[0], newer_than)
            if found is not None:
                return found
            return int(self.api.call("do_bulk_insert", self.collection, files=files))

        return with_retry(once, self.retry_seconds)

    def state(self, task: int) -> TaskState:
        """Where a task is now."""
        st = with_retry(lambda: self.api.call("get_bulk_insert_state", task), self.retry_seconds)
        reason = str(st.infos.get("failed_reason", "") or "")
        return TaskState(task, st.state_name, phase_of(st.state_name), reason, int(st.row_count))

    def newest(self) -> int:
        """The newest task id of this collection (-1 when it has none): ids grow."""
        return with_retry(lambda: max((int(t.task_id) for t in self._tasks()), default=-1),
                          self.retry_seconds)

    def find(self, file: str, newer_than: int = -1) -> int | None:
        """The newest task of this collection that imports `file`, when newer than `newer_than` (a submit
        whose reply was lost; older tasks are another import's)."""
        return with_retry(lambda: self._find(file, newer_than), self.retry_seconds)

    def _find(self, file: str, newer_than: int) -> int | None:
        found = [int(t.task_id) for t in self._tasks() if file in str(t.infos.get("files", "")).split(",")]
        task = max(found, default=None)
        return task if task is not None and task > newer_than else None

    def _tasks(self) -> list:
        return self.api.call("list_bulk_insert_tasks", collection_name=self.collection, limit=0)

    def close(self) -> None:
        """Drop the connection."""
        self.api.close()
