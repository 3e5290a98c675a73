"""SIGKILL the loader, or the Milvus server, mid-import; the same command again ends with exactly the
file's valid rows, each name once."""

from __future__ import annotations

import shutil
import signal

import pytest

from catalog import Catalog
from devstack.milvus_server import MilvusServer
from loader.options import ImportOptions
from tests.conftest import KILLED_SESSION_TTL_S, killable_milvus
from tests.loader.conftest import (
    assert_exact,
    record_jobs,
    records,
    run_loader,
    start_loader,
    wait_job_submitted,
    wait_rows,
    wait_until,
    write_classic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS, DIM, BATCH = 12_000, 32, 400  # ROWS stays under one query page (16,384)
# The import-RPC panic (below) takes the server down within milliseconds of the loader's death; a server
# that survives gives no sign, so it is watched this long.
PANIC_SECONDS = 2.0
# The loader keeps this many batches in flight beyond the last acknowledged row, so a kill that should land
# before the end waits for a row at least that many batches (and two more) short of it.
LAST_KILL = ROWS - (ImportOptions.in_flight + 2) * BATCH


@pytest.mark.parametrize("kill_at", [BATCH, ROWS // 2, LAST_KILL], ids=["first", "mid", "end"])
def test_sigkill_loader_then_rerun(milvus_server, catalog, tmp_path, state_dir, kill_at):
    _, names = write_classic(tmp_path / "a.h5", ROWS, dim=DIM)
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", milvus_server.uri,
            "--collection", catalog.collection, "--batch-size", str(BATCH), "-q"]
    proc = start_loader(args, {"LOADER_STATE_DIR": str(state_dir)})
    seen = wait_rows(state_dir, proc, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and seen < ROWS
    res = run_loader(*args)
    assert res.returncode == 0, res.stderr
    assert "resumed after row" in res.stdout and res.stdout.startswith(f"read {ROWS:,}, imported {ROWS:,},")
    assert_exact(catalog, names)


# Milvus's session TTL sets how long a restart's aftermath lasts, and the loader's restart grace must outlast
# it (catalog/milvus23.py, item 5). The tests shorten both (killable_milvus), keeping grace > TTL, so the
# same recovery runs sooner.
RESTART_GRACE_S = KILLED_SESSION_TTL_S + 4


@pytest.fixture
def server(tmp_path):
    """A Milvus of the test's own, for tests that kill it or may crash it (the session's stays up)."""
    srv = killable_milvus(tmp_path / "milvus").start()
    yield srv
    srv.stop(grace=0)  # its data goes with tmp_path: no clean shutdown to wait for


def _import_rpc_panic(server: MilvusServer) -> bool:
    """Whether Milvus died of its import-RPC panic (milvus-io/milvus#35539, fixed upstream in August 2024):
    the proxy crashes when a client goes away in the middle of an import call (get_bulk_insert_state...)."""
    lines = (server.data_dir / "logs" / "milvus-stdout.log").read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("panic: runtime error")]
    return bool(starts) and any("proxy.(*Proxy)." in x and "Import" in x for x in lines[starts[-1]:starts[-1] + 30])


@pytest.mark.parametrize("files", ["kept", "lost"])
def test_sigkill_loader_in_bulk_mode_then_rerun(server, tmp_path, state_dir, files):
    """Jobs staged, submitted or done when the loader dies: none lost, none imported twice; staged files
    that are gone by the rerun (in memory before a reboot, or deleted) are written again.

    A server of its own: a SIGKILL that lands while one of the loader's job-status calls is in flight
    crashes Milvus 2.3 (see _import_rpc_panic); the test then restarts it, as compose's restart policy
    would, and the rows must still come out exact."""
    catalog = Catalog(server.uri, collection="killed")
    _, names = write_classic(tmp_path / "a.h5", ROWS, dim=DIM)
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", server.uri, "--collection", "killed",
            "--batch-size", str(BATCH), "--mode", "bulk", "--bulk-dir", str(tmp_path / "stage"),
            "--bulk-rows", "3000", "-q"]
    proc = start_loader(args, {"LOADER_STATE_DIR": str(state_dir)})
    wait_rows(state_dir, proc, ROWS // 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    if wait_until(lambda: not server.running, PANIC_SECONDS):
        assert _import_rpc_panic(server), server._log_tail()
        server.start()
        catalog.reset()
    if files == "lost":
        (record,) = records(state_dir)
        open_jobs = [j for j in record_jobs(record) if j["state"] != "done"]
        assert open_jobs, record  # the kill left a job to finish, whose files now go
        shutil.rmtree(tmp_path / "stage")
        args.remove("-q")  # the rerun's warnings are what says the files were written again
    res = run_loader(*args, timeout=300)  # default --retry-seconds: rides out a restarted Milvus
    assert res.returncode == 0, res.stderr
    if files == "lost" and any(j["state"] == "staged" for j in open_jobs):
        assert "are gone; writing them again" in res.stderr
    assert_exact(catalog, names)
    catalog.close()


# Bulk mode: Milvus 2.3 fails the jobs that were running when it restarts, and for one session TTL may send
# a new job to the dead data node; the rerun resubmits failed jobs after LOADER_RESTART_GRACE (docs/LOADER.md).
# Killed while a later job runs: jobs done before it must stay done, the killed one is resubmitted. (Insert
# mode's Milvus kills are tests/reliability/test_faults.py's, at the first batch and after the last.)
def test_sigkill_milvus_during_a_bulk_import_then_rerun(server, tmp_path, state_dir):
    catalog = Catalog(server.uri, collection="killed")
    _, names = write_classic(tmp_path / "a.h5", ROWS, dim=DIM)
    args = ["import", str(tmp_path / "a.h5"), "--milvus-uri", server.uri, "--collection", "killed",
            "--batch-size", str(BATCH), "--mode", "bulk", "--bulk-dir", str(tmp_path / "stage"),
            "--bulk-rows", "3000"]
    proc = start_loader([*args, "-q", "--retry-seconds", "1"], {"LOADER_STATE_DIR": str(state_dir)})
    wait_job_submitted(state_dir, proc, later=True)
    server.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.strip().startswith("Error: "), err
    assert len(err.strip().splitlines()) == 1 and "the import is resumable" in err, err
    server.start()
    catalog.reset()
    # default --retry-seconds: rides out Milvus's recovery; without -q its warnings say what the rerun did
    res = run_loader(*args, env={"LOADER_RESTART_GRACE": str(RESTART_GRACE_S)}, timeout=300)
    assert res.returncode == 0, res.stderr
    # the job killed mid-import was failed by the restart, then imported again
    assert "Milvus restarted during import job" in res.stderr, res.stderr
    assert_exact(catalog, names)
    catalog.close()
