"""Ray for `extract --engine ray`: connect to a cluster (`--ray-address` / RAY_ADDRESS), or start one here.

A Ray started here listens on 127.0.0.1 only (as the local Milvus does), with token authentication on
(Ray's default for a new local cluster: `ray.init` sets RAY_AUTH_MODE=token and keeps a token in
~/.ray/auth_token; we leave RAY_AUTH_MODE alone, so a user's `disabled` is theirs to choose), no
dashboard, and a small object store. Ray would otherwise replace 127.0.0.1 by the machine's address and
bind its gRPC servers to every interface; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` is Ray's own switch to a
single loopback-only node, and it must be set before Ray is imported (Ray reads it at import).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
DEFAULT_OBJECT_STORE_MB = 300  # enough for a few batches of decoded images in flight; small machines need RAM
# A local start is tried this often: on a busy machine Ray's raylet may miss the 30 s Ray gives it to register
# ("The current node timed out during startup", ray-project/ray#62883, #47087); a second start usually works.
LOCAL_START_TRIES = 2

log = logging.getLogger(__name__)


def _import_ray(local: bool):
    """Import ray (with the loopback switch set first, for a local cluster); a missing ray is a clear error."""
    if local:
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    try:
        import ray
    except ImportError:
        raise RuntimeError("--engine ray needs Ray: run `make setup-ray` (pip install -r requirements/ray.txt "
                           "-c requirements/constraints.txt)") from None
    if local:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # when ray was imported before the variable was set
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                object_store_mb: int = DEFAULT_OBJECT_STORE_MB) -> Iterator[object]:
    """Connected Ray for the block: the cluster at `address`, a running one (already initialised in this
    process, e.g. by tests), or a local one started here and shut down afterwards. Yields the ray module."""
    ray = _import_ray(local=not address)
    if ray.is_initialized():
        yield ray
        return
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False,
             "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        for attempt in range(1, LOCAL_START_TRIES + 1):
            try:
                ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=num_cpus,
                         object_store_memory=object_store_mb * 1024 * 1024, **quiet)
                break
            except Exception as exc:  # Ray raises a bare Exception for this timeout
                if attempt == LOCAL_START_TRIES or "timed out during startup" not in str(exc):
                    raise
                log.warning("the local Ray did not start (%s); starting it again", exc)
                ray.shutdown()
    try:
        yield ray
    finally:
        ray.shutdown()


def gpu_count(ray) -> int:
    """GPUs in the cluster (0 on a CPU-only machine): one model actor per GPU."""
    return int(ray.cluster_resources().get("GPU", 0))


def cpu_count(ray) -> int:
    """CPUs in the cluster (what decode tasks and CPU model actors share)."""
    return int(ray.cluster_resources().get("CPU", 1))
