"""Milvus 2.3 compatibility: everything the catalogue does only because the server is Milvus 2.3.

The server this project runs is the 2.3.5 standalone binary of the `milvus` PyPI package (the only Milvus
installable here). Each item below says which server versions it applies to and why, so that moving to
2.5 is a matter of deleting this module's users one by one:

1. The ORM bulk-insert API (`OrmBulkInsert`): the only import API of 2.2-2.3 (2.4 keeps it next to the
   v2 one). Files are imported through `utility.do_bulk_insert` / `get_bulk_insert_state` /
   `list_bulk_insert_tasks` on an ORM connection (`pymilvus.connections`), which pymilvus 3 deprecates;
   2.5 has the v2 import API (`pymilvus.bulk_writer.bulk_import` / `get_import_progress` /
   `list_import_jobs`: jobs with string ids and states Pending/Importing/Completed/Failed).
2. Task state names (`COMPLETED_STATES`, `PERSISTED_STATES`, `FAILED_STATES`) of 2.3's tasks: Pending ->
   Started -> Persisted -> Completed, or Failed. Persisted means every file is read and the rows and the
   task are persisted; rootcoord flips persisted tasks to Completed on a 2-second timer
   (`loadAndFlipPersistedTasks`), so a job's files can be let go at Persisted, up to 2 s before it
   completes. 2.5's v2 jobs have no Persisted state.
3. One import job at a time. 2.3 runs one import task at a time and starts the next only when that timer
   has flipped the last one: each job costs 1-2 s beyond its rows, so jobs are large (docs/LOADER.md).
4. Held signals (`signals_held`), for servers without the fix of milvus-io/milvus#35539 ("proxy panic
   after Import related api failed", fixed upstream in August 2024; reproduced with 2.3.5 and a cancelled
   `get_bulk_insert_state`): 2.3's proxy dereferences a nil response when an import RPC fails inside the
   server, and a client that cancels the call mid-flight makes it fail, so the whole server crashes.
   Ctrl-C and SIGTERM are held while such a call is in flight; SIGKILL cannot be held.
5. Restarts (`RESTARTED_REASON`, `RESTART_GRACE_S`, `STALL_SECONDS`). After an unclean restart, 2.3 fails
   the tasks that were running with the reason "task marked failed as service restarted", and for one
   session TTL (`common.session.ttl`, 30 s by default; the embedded etcd restarts the dead node's lease)
   the dead data node's session still looks alive, so a task submitted then may be sent to it, where it
   stays "Started" until the server expires it (`importTaskExpiration`, 15 minutes, checked every 5).
   So a task failed by a restart is resubmitted after a grace longer than the TTL (not counted against the
   job), no task of ours waits queued in the server (a restart sends queued tasks out at once), and a
   task that does not move for `STALL_SECONDS` is reported rather than waited on. Seen with 2.3.5;
   whether 2.4/2.5's reworked import service still needs any of it was not checked (not installable here).
6. DISKANN (`diskann_refusal`). The `milvus` PyPI build of 2.3.5 has no DiskANN: its index node fails the
   build with `bad_function_call` and Milvus retries the task forever, so an import that asks for it would
   hang. Before such an import, a DISKANN index is built on a tiny temporary collection with a deadline;
   a server that cannot is refused up front. Servers built with DiskANN (the Docker images, with
   `queryNode.enableDisk: true`) pass in a few seconds.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from pymilvus import connections, utility

from catalog.errors import MilvusUnavailable, classify

# 2. Task state names of the 2.3 bulk-insert API (pymilvus BulkInsertState.state_name).
COMPLETED_STATES = ("Completed",)
PERSISTED_STATES = ("Persisted",)  # every file read, rows persisted: only the 2-s completion timer is left
FAILED_STATES = ("Failed", "Failed and cleaned")

# 5. Restarts.
RESTARTED_REASON = "service restarted"  # in "task marked failed as service restarted"
RESTART_GRACE_S = 40.0  # default of LOADER_RESTART_GRACE: longer than the 30-s session TTL
STALL_SECONDS = 180.0  # a task neither finishing nor moving for this long is reported


# 6. DISKANN.
# Seconds (an int: see create_index below); where the server has DiskANN, 3,000 16-d vectors build in a few s.
DISKANN_PROBE_S = 15
_PROBE_DIM, _PROBE_ROWS = 16, 3000  # over the 1,024 rows below which Milvus builds no index


def diskann_refusal(call: Any, deadline: int = DISKANN_PROBE_S) -> str | None:
    """None when the server builds a DISKANN index on a tiny temporary collection within `deadline`, else
    why not. `call(method, *args, **kwargs)` is the Catalog's MilvusClient call; the probe is dropped."""
    import numpy as np
    from pymilvus import DataType, MilvusClient

    name = f"diskann_probe_{uuid.uuid4().hex[:12]}"
    schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=_PROBE_DIM)
    index = MilvusClient.prepare_index_params()
    index.add_index(field_name="vector", index_type="DISKANN", metric_type="COSINE", index_name="vector")
    vectors = np.random.default_rng(0).standard_normal((_PROBE_ROWS, _PROBE_DIM)).astype(np.float32)
    try:
        call("create_collection", name, schema=schema)
        call("insert", name, [{"vector": v} for v in vectors])
        call("flush", name, timeout=deadline)
        call("create_index", name, index, timeout=int(deadline))  # pymilvus stops waiting on ints only
        return None
    except Exception as exc:  # refused, failed or still retrying at the deadline: all mean "cannot"
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            call("drop_collection", name)


def failed_by_restart(reason: str) -> bool:
    """Whether a failed task's reason says the server restarted under it (not the job's fault)."""
    return RESTARTED_REASON in reason


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """4. Hold Ctrl-C and SIGTERM until the block ends, then deliver them (once each, in order).

    An interrupt that lands during an import RPC waits the millisecond the call takes instead of cancelling
    it (milvus-io/milvus#35539, 2.3 only). Python runs signal handlers on the main thread only, so
    elsewhere this holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: a handler set outside Python, which cannot be put back from here
                signal.signal(s, handler)
        for s in dict.fromkeys(caught):  # once each, in the order they came
            signal.raise_signal(s)


class OrmBulkInsert:
    """1. The 2.3 bulk-insert calls (`pymilvus.utility`) on an ORM connection of their own.

    Every call has a timeout (without one, a dead server makes pymilvus wait indefinitely), runs with
    signals held (4.), and raises the typed errors of catalog.errors.
    """

    def __init__(self, uri: str, token: str = "", timeout: float = 10.0):
        self.uri = uri
        self.timeout = timeout
        self.alias = f"bulk-insert-{uuid.uuid4().hex[:8]}"
        try:
            with warnings.catch_warnings():  # deprecated in pymilvus 3, but it is what 2.3 speaks
                warnings.simplefilter("ignore")
                connections.connect(alias=self.alias, uri=uri, token=token or "", timeout=timeout)
        except Exception as exc:
            raise MilvusUnavailable(f"cannot reach Milvus at {uri}: {exc}", "connect", str(exc)) from exc

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """`pymilvus.utility.<fn>(*args, **kwargs)` on this connection."""
        with warnings.catch_warnings(), signals_held():
            warnings.simplefilter("ignore")
            try:
                return getattr(utility, fn)(*args, using=self.alias, timeout=self.timeout, **kwargs)
            except Exception as exc:
                raise classify(exc, fn, self.uri) from exc

    def close(self) -> None:
        """Drop the connection."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                connections.disconnect(self.alias)
            except Exception:  # closing a dead channel may raise; nothing to keep
                pass
