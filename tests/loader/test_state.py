"""loader.state: each job transition, the record's JSON round trip, and records of the previous version."""

from __future__ import annotations

import json

import pytest

from loader.state import (
    JOB_RESTARTS,
    JOB_TRIES,
    BulkRecord,
    ImportRecord,
    ImportState,
    Job,
    JobState,
    TransitionError,
)

S = JobState


def _job(state: JobState = S.STAGED, keys: list[str] | None = None, **kw) -> Job:
    return Job(first=0, end=1000, rows=990, files=["/stage/rows-0/name.npy"], keys=keys or [], state=state,
               **kw)


def test_a_job_goes_from_staged_to_done():
    job = _job()
    assert job.unsubmitted and job.server_files == ["/stage/rows-0/name.npy"]
    job.submitting()
    assert job.state is S.SUBMITTING and job.unsubmitted
    job.submitted(42)
    assert job.state is S.SUBMITTED and job.task == 42 and not job.unsubmitted
    job.completed()
    assert job.state is S.DONE


def test_upload_puts_the_bucket_between_staged_and_submitting():
    job = _job()
    job.uploaded(["bulk/c-1/rows-0/name.npy"])
    assert job.state is S.UPLOADED and job.server_files == ["bulk/c-1/rows-0/name.npy"]
    assert job.files == ["/stage/rows-0/name.npy"]  # kept: clean-up and keys are derived from them
    job.submitting()
    assert job.server_files == ["bulk/c-1/rows-0/name.npy"]


@pytest.mark.parametrize("start", [S.STAGED, S.SUBMITTING])
def test_restaging_writes_new_files_or_finishes_a_job_with_no_row_left(start):
    job = _job(start)
    job.restaged(["/stage/rows-0/name.npy", "/stage/rows-0/vector.npy"], 400)
    assert (job.state, job.rows, job.keys, len(job.files)) == (S.STAGED, 400, [], 2)
    job = _job(start)
    job.restaged([], 0)  # every name of it was stored meanwhile (upserted instead)
    assert job.state is S.DONE and job.rows == 0


@pytest.mark.parametrize("keys, back_to", [([], S.STAGED), (["k"], S.UPLOADED)])
def test_a_failed_import_goes_back_to_be_submitted_again_until_out_of_tries(keys, back_to):
    job = _job(S.SUBMITTED, keys=keys, task=7)
    for failure in range(1, JOB_TRIES):
        job.failed()
        # the failed task stays recorded: it is never adopted again
        assert (job.state, job.failures, job.task) == (back_to, failure, 6 + failure)
        job.submitting()
        job.submitted(7 + failure)
    job.failed()
    assert job.state is S.FAILED and job.failures == JOB_TRIES and not job.unsubmitted
    job.retried()  # a rerun, after the cause was fixed
    assert job.state is back_to and job.failures == 0


def test_a_restart_is_not_counted_as_a_try_up_to_its_limit():
    job = _job(S.SUBMITTED, task=7)
    for n in range(1, JOB_RESTARTS + 1):
        assert job.can_restart
        job.restarted()
        assert (job.state, job.restarts, job.failures) == (S.STAGED, n, 0)
        job.submitting()
        job.submitted(7 + n)
    assert not job.can_restart
    with pytest.raises(TransitionError):
        job.restarted()
    job.failed()  # from here a restart counts as a failure
    assert job.failures == 1


@pytest.mark.parametrize("state, move", [
    (S.SUBMITTED, lambda j: j.uploaded(["k"])),
    (S.UPLOADED, lambda j: j.uploaded(["k"])),
    (S.SUBMITTED, lambda j: j.submitting()),
    (S.STAGED, lambda j: j.submitted(1)),
    (S.STAGED, lambda j: j.completed()),
    (S.DONE, lambda j: j.completed()),
    (S.STAGED, lambda j: j.failed()),
    (S.UPLOADED, lambda j: j.restaged([], 0)),
    (S.SUBMITTED, lambda j: j.retried()),
    (S.DONE, lambda j: j.restarted()),
])
def test_a_transition_from_the_wrong_state_is_refused(state, move):
    job = _job(state)
    with pytest.raises(TransitionError):
        move(job)
    assert job == _job(state)  # left as it was


def _state(tmp_path) -> ImportState:
    h5 = tmp_path / "a.h5"  # its path, size and mtime name the record
    if not h5.exists():
        h5.write_bytes(b"not read")
    return ImportState(tmp_path / "state", h5, "http://m:19530", "images", "bulk", ("dataset_1", "dataset_2"))


def test_the_record_round_trips_and_belongs_to_one_collection(tmp_path):
    state = _state(tmp_path)
    assert state.load(11) == ImportRecord(collection_id=11)  # nothing saved yet
    rec = state.record
    rec.rows_done, rec.skipped = 3000, {"zero_vector": 2}
    rec.bulk = BulkRecord(fresh=True, stage_root="/dev/shm/x", task_floor=100, upserted=5,
                          jobs=[_job(S.DONE, task=101), _job(S.UPLOADED, keys=["k"], failures=1, restarts=2)])
    state.save()
    saved = json.loads(state.path.read_text())
    assert saved["version"] == 2 and [j["state"] for j in saved["bulk"]["jobs"]] == ["done", "uploaded"]
    assert _state(tmp_path).load(11) == rec
    assert _state(tmp_path).load(12) == ImportRecord(collection_id=12)  # re-created collection: start afresh
    assert rec.bulk.imported() == 5 + 990 and rec.bulk.open_jobs() == [rec.bulk.jobs[1]]
    state.clear()
    assert not state.path.exists()


def test_an_unreadable_record_is_ignored(tmp_path):
    state = _state(tmp_path)
    state.path.parent.mkdir(parents=True)
    for text in ("{torn", json.dumps({"version": 99, "collection_id": 11}),
                 json.dumps({"version": 2, "collection_id": 11, "bulk": {"jobs": [{"first": 0}]}})):
        state.path.write_text(text)
        assert state.load(11) == ImportRecord(collection_id=11)


def test_a_record_of_the_previous_version_is_converted(tmp_path):
    """Version 1: plain dicts, a job's `status` plus `maybe_submitted`, `tries` counting submissions."""
    v1 = {
        "collection_id": 11, "rows_done": 12000, "upserted": 3, "skipped": {"nan_or_inf": 1}, "fresh": False,
        "task_floor": 100, "stage_root": "/dev/shm/x",
        "jobs": [
            {"files": ["a"], "first": 0, "end": 3000, "rows": 3000, "status": "done", "task": 101, "tries": 1},
            {"files": ["b"], "first": 3000, "end": 6000, "rows": 3000, "status": "submitted", "task": 102,
             "tries": 2, "restarts": 1, "maybe_submitted": True},
            {"files": ["c"], "first": 6000, "end": 9000, "rows": 3000, "status": "staged", "keys": ["k"],
             "maybe_submitted": True, "tries": 1, "task": 103},
            {"files": ["d"], "first": 9000, "end": 11000, "rows": 2000, "status": "staged", "keys": ["k2"]},
            {"file": "e", "first": 11000, "end": 12000, "rows": 1000, "status": "staged", "tries": 2},
        ],
    }
    state = _state(tmp_path)
    state.path.parent.mkdir(parents=True)
    state.path.write_text(json.dumps(v1))
    rec = state.load(11)
    assert (rec.rows_done, rec.skipped) == (12000, {"nan_or_inf": 1})
    b = rec.bulk
    assert (b.fresh, b.task_floor, b.stage_root, b.upserted) == (False, 100, "/dev/shm/x", 3)
    assert [(j.state, j.task, j.failures, j.restarts) for j in b.jobs] == [
        (S.DONE, 101, 0, 0),
        (S.SUBMITTED, 102, 1, 1),  # one failed submission before the running one
        (S.SUBMITTING, 103, 1, 0),
        (S.UPLOADED, None, 0, 0),
        (S.STAGED, None, 2, 0),
    ]
    assert b.jobs[4].files == ["e"] and b.jobs[2].server_files == ["k"]
    del v1["task_floor"]  # older still: any task newer than the job's own is adopted
    state.path.write_text(json.dumps(v1))
    assert state.load(11).bulk.task_floor == -1
    state.path.write_text(json.dumps({"collection_id": 11, "rows_done": 400, "imported": 390}))  # insert mode
    assert state.load(11) == ImportRecord(collection_id=11, rows_done=400, imported=390)
