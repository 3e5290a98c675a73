"""Resume state: a small JSON file per (file, Milvus, collection, mode) recording what already landed.

The record is typed (`ImportRecord`; in bulk mode a `BulkRecord` with one `Job` per import job) and written
atomically (temp file + fsync + rename) after every acknowledged batch and every step of a job, so a
SIGKILL at any moment leaves either the old or the new record, never a torn one.

A bulk job moves through explicit states; each transition is a method of `Job` that refuses to start from
a state it does not apply to (loader.bulk drives them):

    STAGED --uploaded--> UPLOADED                     (object storage: the bucket now holds the only copy)
    STAGED | UPLOADED --submitting--> SUBMITTING      (a submit may reach the server; its reply may be lost)
    STAGED | SUBMITTING --restaged--> STAGED | DONE   (its files were gone: written again from the source)
    SUBMITTING --submitted(task)--> SUBMITTED
    SUBMITTED --completed--> DONE
    SUBMITTED --restarted--> STAGED | UPLOADED        (a server restart failed it: not counted as a try)
    SUBMITTED --failed--> STAGED | UPLOADED | FAILED  (FAILED after JOB_TRIES failures: the run stops)
    FAILED --retried--> STAGED | UPLOADED             (a rerun gets fresh tries)

Records of the previous version (version 1: untyped dicts, a job's `status` plus `maybe_submitted` and
`tries`) are read and converted, so an import interrupted before an upgrade resumes after it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = 2
JOB_TRIES = 3  # failed imports of one job before the run gives up (a failed import leaves no rows)
JOB_RESTARTS = 5  # imports of one job a server restart may fail before those count as tries too


def default_state_dir() -> Path:
    """LOADER_STATE_DIR, else ~/.cache/image-search/loader (loader/settings.py)."""
    from loader.settings import state_dir

    return state_dir()


class JobState(str, enum.Enum):
    """Where one bulk import job is (the value is what the record stores)."""

    STAGED = "staged"  # its files are complete on local disk (`files`)
    UPLOADED = "uploaded"  # object storage: its files are in the bucket (`keys`); local copies deleted
    SUBMITTING = "submitting"  # a submit was (or is about to be) sent: there may be a task we never heard of
    SUBMITTED = "submitted"  # the server accepted it: `task` is its task id
    DONE = "done"  # its rows are imported (or there were none left): never imported again
    FAILED = "failed"  # failed JOB_TRIES times; the run stopped, a rerun retries it


class TransitionError(RuntimeError):
    """A job was asked to move from a state that does not allow it (a bug in the caller)."""


@dataclass
class Job:
    """One import job: rows [first, end) of the file, `rows` of them in its files."""

    first: int
    end: int
    rows: int
    files: list[str]  # the staged files (local paths); kept after upload: object keys and clean-up use them
    keys: list[str] = field(default_factory=list)  # object keys, once uploaded
    state: JobState = JobState.STAGED
    task: int | None = None  # the newest task id the server gave it (older tasks for its files are not its)
    failures: int = 0  # failed imports, counted against JOB_TRIES
    restarts: int = 0  # imports failed by a server restart, not counted (up to JOB_RESTARTS)

    @property
    def server_files(self) -> list[str]:
        """What the import job reads: the object keys once uploaded, else the local paths."""
        return self.keys or self.files

    @property
    def unsubmitted(self) -> bool:
        """Waiting to be submitted: no task of the server is known to be running it (a FAILED job waits for
        a rerun to retry it first)."""
        return self.state in (JobState.STAGED, JobState.UPLOADED, JobState.SUBMITTING)

    @property
    def can_restart(self) -> bool:
        """Whether one more failure by a server restart is forgiven."""
        return self.restarts < JOB_RESTARTS

    def _move(self, allowed: tuple[JobState, ...], to: JobState, how: str) -> None:
        if self.state not in allowed:
            raise TransitionError(f"{self}: cannot be {how} when {self.state.value}")
        self.state = to

    def __str__(self) -> str:
        return f"job of rows {self.first}-{self.end}"

    def _ready(self) -> JobState:
        return JobState.UPLOADED if self.keys else JobState.STAGED

    # -- transitions (each saves nothing: the caller saves the record right after) ---------------------
    def uploaded(self, keys: list[str]) -> None:
        """STAGED -> UPLOADED: the files are in the bucket under `keys`."""
        self._move((JobState.STAGED,), JobState.UPLOADED, "uploaded")
        self.keys = list(keys)

    def restaged(self, files: list[str], rows: int) -> None:
        """STAGED | SUBMITTING -> STAGED, or DONE when none of its rows is left to import (all stored by now):
        its files were gone and are written again. The file rows it covers stay the same."""
        to = JobState.STAGED if rows else JobState.DONE
        self._move((JobState.STAGED, JobState.SUBMITTING), to, "restaged")
        self.files, self.rows, self.keys = list(files), rows, []

    def submitting(self) -> None:
        """STAGED | UPLOADED -> SUBMITTING: from here on a crash may leave a task we never heard of."""
        self._move((JobState.STAGED, JobState.UPLOADED), JobState.SUBMITTING, "submitted")

    def submitted(self, task: int) -> None:
        """SUBMITTING -> SUBMITTED: the server runs it as `task` (one we started or found again)."""
        self._move((JobState.SUBMITTING,), JobState.SUBMITTED, "accepted")
        self.task = task

    def completed(self) -> None:
        """SUBMITTED -> DONE."""
        self._move((JobState.SUBMITTED,), JobState.DONE, "completed")

    def restarted(self) -> None:
        """SUBMITTED -> STAGED | UPLOADED: a server restart failed it; to be submitted again, and not counted
        as a try (up to JOB_RESTARTS times: see can_restart)."""
        if not self.can_restart:
            raise TransitionError(f"{self}: restarted {self.restarts} times already")
        self._move((JobState.SUBMITTED,), self._ready(), "restarted")
        self.restarts += 1

    def failed(self) -> None:
        """SUBMITTED -> STAGED | UPLOADED to be submitted again, or FAILED at its JOB_TRIES-th failure."""
        to = JobState.FAILED if self.failures + 1 >= JOB_TRIES else self._ready()
        self._move((JobState.SUBMITTED,), to, "failed")
        self.failures += 1

    def retried(self) -> None:
        """FAILED -> STAGED | UPLOADED, with fresh tries (a rerun after the cause was fixed)."""
        self._move((JobState.FAILED,), self._ready(), "retried")
        self.failures = 0

    # -- JSON ------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Job:
        return cls(first=int(d["first"]), end=int(d["end"]), rows=int(d["rows"]), files=list(d["files"]),
                   keys=list(d.get("keys", [])), state=JobState(d["state"]),
                   task=None if d.get("task") is None else int(d["task"]), failures=int(d.get("failures", 0)),
                   restarts=int(d.get("restarts", 0)))


@dataclass
class BulkRecord:
    """What a bulk import has done so far."""

    fresh: bool  # the collection was created by this import: none of the file's names is stored yet
    stage_root: str | None = None  # where files are staged without --bulk-dir (chosen once per import)
    task_floor: int | None = None  # tasks up to this id are earlier imports': never adopted (None: not asked)
    upserted: int = 0  # rows written through the insert path (their names were stored already)
    jobs: list[Job] = field(default_factory=list)

    def open_jobs(self) -> list[Job]:
        """The jobs not DONE yet, in file order."""
        return [j for j in self.jobs if j.state is not JobState.DONE]

    def imported(self) -> int:
        """Rows stored so far: upserted, plus those of completed jobs."""
        return self.upserted + sum(j.rows for j in self.jobs if j.state is JobState.DONE)


@dataclass
class ImportRecord:
    """The resume record of one import."""

    collection_id: Any = None  # Milvus's id: a dropped and re-created collection never matches
    rows_done: int = 0  # file rows accounted for: a rerun reads on from here
    skipped: dict[str, int] = field(default_factory=dict)  # skip counts of those rows
    imported: int = 0  # insert mode: rows written
    bulk: BulkRecord | None = None  # bulk mode, once started
    # insert mode: the collection was created by this import, so rows never sent before are plainly inserted
    fresh: bool = False
    sent: int = 0  # insert mode: file rows up to here were sent to Milvus (maybe written: upserted on a rerun)

    def to_json(self) -> dict[str, Any]:
        bulk = None
        if self.bulk is not None:
            bulk = {**asdict(self.bulk), "jobs": [j.to_json() for j in self.bulk.jobs]}
        return {"version": VERSION, "collection_id": self.collection_id, "rows_done": self.rows_done,
                "skipped": self.skipped, "imported": self.imported, "bulk": bulk, "fresh": self.fresh,
                "sent": self.sent}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImportRecord:
        """A record as saved by this version, or by version 1 (converted)."""
        if "version" not in d:
            return _from_v1(d)
        if d["version"] != VERSION:
            raise ValueError(f"record version {d['version']} (this loader writes {VERSION})")
        rec = cls(collection_id=d.get("collection_id"), rows_done=int(d.get("rows_done", 0)),
                  skipped={str(k): int(v) for k, v in (d.get("skipped") or {}).items()},
                  imported=int(d.get("imported", 0)), fresh=bool(d.get("fresh", False)),
                  sent=int(d.get("sent", 0)))
        if d.get("bulk") is not None:
            b = d["bulk"]
            floor = None if b.get("task_floor") is None else int(b["task_floor"])
            rec.bulk = BulkRecord(fresh=bool(b["fresh"]), stage_root=b.get("stage_root"), task_floor=floor,
                                  upserted=int(b.get("upserted", 0)),
                                  jobs=[Job.from_json(j) for j in b["jobs"]])
        return rec


def _from_v1(d: dict[str, Any]) -> ImportRecord:
    """Convert a version 1 record (a plain dict: `jobs` of `status` staged/submitted/done, `maybe_submitted`,
    `tries` counting submissions, `keys` once uploaded; older still, one `file` a job)."""
    rec = ImportRecord(collection_id=d.get("collection_id"), rows_done=int(d.get("rows_done", 0)),
                       skipped=dict(d.get("skipped") or {}), imported=int(d.get("imported", 0)))
    if "jobs" not in d:
        return rec
    jobs = []
    for j in d["jobs"]:
        keys, tries = list(j.get("keys") or []), int(j.get("tries", 0))
        if j.get("status") in ("done", "submitted"):  # its last submission did not fail
            state, tries = JobState(j["status"]), max(0, tries - 1)
        elif j.get("maybe_submitted"):
            state = JobState.SUBMITTING
        else:
            state = JobState.UPLOADED if keys else JobState.STAGED
        jobs.append(Job(first=int(j["first"]), end=int(j["end"]), rows=int(j["rows"]),
                        files=list(j.get("files") or [j.get("file", "")]), keys=keys, state=state,
                        task=j.get("task"), failures=tries, restarts=int(j.get("restarts", 0))))
    floor = d.get("task_floor", -1 if jobs else None)  # records older still had none: adopt any newer task
    rec.bulk = BulkRecord(fresh=bool(d.get("fresh", False)), stage_root=d.get("stage_root"), task_floor=floor,
                          upserted=int(d.get("upserted", 0)), jobs=jobs)
    return rec


class ImportState:
    """Where the resume record of one import lives; `record` is the typed record, `save()` writes it."""

    def __init__(self, state_dir: str | Path | None, h5_path: Path, uri: str, collection: str, mode: str,
                 datasets: tuple[str, str]):
        st = h5_path.stat()
        identity = "|".join(
            [str(h5_path.resolve()), str(st.st_size), str(st.st_mtime_ns), uri, collection, mode, *datasets]
        )
        key = hashlib.sha1(identity.encode()).hexdigest()[:16]
        self.path = Path(state_dir or default_state_dir()) / f"{collection}-{mode}-{key}.json"
        self.record = ImportRecord()

    def load(self, collection_id: Any) -> ImportRecord:
        """The saved record when it belongs to this very collection (same id), else a fresh one."""
        record = None
        try:
            record = ImportRecord.from_json(json.loads(self.path.read_text()))
        except OSError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # torn by hand, or a newer loader's
            log.warning("ignoring the resume record %s (%s): starting this import afresh", self.path, exc)
        if record is None or record.collection_id != collection_id:
            record = ImportRecord(collection_id=collection_id)
        self.record = record
        return record

    def save(self) -> None:
        """Write atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.record.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """Forget the record (the import finished)."""
        self.path.unlink(missing_ok=True)
