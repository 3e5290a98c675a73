"""`SharedDir`: what the service's worker processes share, as files in one directory.

gunicorn runs several worker processes (SEARCH_WORKERS) so that request handling is not bound to one
Python thread at a time; requests of one client land on any of them. What must be the same for all of
them lives here: locks (creating the collection, running one near-duplicate job), a write counter (cached
groups are stale after a write through any worker) and small JSON records (the jobs' results).

Locks are `fcntl.flock` locks on files: the kernel releases them when a process dies, so a killed worker
never leaves a job "running" for ever. Records are written to a temporary file and renamed over the old
one, so a reader sees the whole old record or the whole new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SharedDir:
    """Locks, counters and JSON records in `root` (created when missing), shared by every process that
    opens the same directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # flock locks belong to an open file, not a thread: threads of one process take a thread lock first.
        self._thread_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def temporary(cls) -> "SharedDir":
        """A directory of its own, removed when the object is collected or the process exits (one process
        that shares with nobody: tests, an app built in-process)."""
        tmp = tempfile.TemporaryDirectory(prefix="search-state-")
        shared = cls(tmp.name)
        shared._tmp = tmp  # keeps the directory as long as the object lives
        return shared

    def path(self, name: str) -> Path:
        """The file `name` in the directory (a plain file name: letters, digits, `_.-`)."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain file name: {name!r}")
        return self.root / name

    def _thread_lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._thread_locks.setdefault(name, threading.Lock())

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock `name` against every thread of every process sharing the directory (waits)."""
        with self._thread_lock(name):
            with open(self.path(name + ".lock"), "a+b") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def try_lock(self, name: str) -> IO[bytes] | None:
        """Take the lock `name` without waiting: its open file (close it, or `release` it, to let go), or
        None when another holder has it. For work that outlives the call, such as a background job."""
        fh = open(self.path(name + ".lock"), "a+b")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return fh

    def is_locked(self, name: str) -> bool:
        """Whether someone holds the lock `name` now (a hint: it may change at once)."""
        fh = self.try_lock(name)
        if fh is None:
            return True
        fh.close()
        return False

    @staticmethod
    def release(fh: IO[bytes]) -> None:
        """Let go of a lock `try_lock` took."""
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()

    def bump(self, name: str) -> None:
        """Add one to the counter `name`: one byte appended, which O_APPEND makes atomic across processes."""
        fd = os.open(self.path(name + ".count"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)

    def counter(self, name: str) -> int:
        """The counter `name` (0 before the first bump)."""
        try:
            return self.path(name + ".count").stat().st_size
        except FileNotFoundError:
            return 0

    def write_json(self, name: str, value: Any) -> None:
        """Replace the record `name` with `value` (JSON), whole."""
        target = self.path(name + ".json")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(value, separators=(",", ":")).encode())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def read_json(self, name: str) -> tuple[Any, float] | None:
        """(record `name`, its modification time) or None when there is none."""
        path = self.path(name + ".json")
        try:
            with open(path, "rb") as fh:
                stamp = os.fstat(fh.fileno()).st_mtime_ns / 1e9
                return json.loads(fh.read()), stamp
        except FileNotFoundError:
            return None

    def remove(self, name: str) -> None:
        """Delete the record `name` if it is there."""
        with contextlib.suppress(FileNotFoundError):
            self.path(name + ".json").unlink()

    def records(self, prefix: str) -> list[tuple[str, float]]:
        """(name, modification time) of the records whose names start with `prefix`, oldest first."""
        found = []
        for p in self.root.glob(f"{prefix}*.json"):
            with contextlib.suppress(FileNotFoundError):
                found.append((p.name[:-len(".json")], p.stat().st_mtime))
        return sorted(found, key=lambda x: x[1])
