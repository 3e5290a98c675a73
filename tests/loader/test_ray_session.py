"""`ray_session` starting a local Ray: a start that times out (a busy machine) is tried once more, other
errors are not. A fake ray module stands in (unit test: no Ray started)."""

from __future__ import annotations

import pytest

from loader import ray_cluster

TIMEOUT = "The current node timed out during startup. This could happen because some of the raylet failed"


class FakeRay:
    def __init__(self, failures: list[str]):
        self.failures = list(failures)
        self.inits = 0
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.inits += 1
        if self.failures:
            raise Exception(self.failures.pop(0))  # noqa: TRY002 - what Ray raises

    def shutdown(self) -> None:
        self.shutdowns += 1


def use(monkeypatch, fake: FakeRay) -> None:
    monkeypatch.setattr(ray_cluster, "_import_ray", lambda local: fake)


def test_a_local_start_that_timed_out_is_tried_again(monkeypatch):
    fake = FakeRay([TIMEOUT])
    use(monkeypatch, fake)
    with ray_cluster.ray_session(num_cpus=1) as ray:
        assert ray is fake
    assert fake.inits == 2 and fake.shutdowns == 2  # the failed start's leftovers, then ours


def test_a_second_timeout_is_raised(monkeypatch):
    fake = FakeRay([TIMEOUT, TIMEOUT])
    use(monkeypatch, fake)
    with pytest.raises(Exception, match="timed out during startup"):
        with ray_cluster.ray_session(num_cpus=1):
            pass
    assert fake.inits == 2


def test_other_start_errors_are_not_retried(monkeypatch):
    fake = FakeRay(["object store memory too large"])
    use(monkeypatch, fake)
    with pytest.raises(Exception, match="object store"):
        with ray_cluster.ray_session(num_cpus=1):
            pass
    assert fake.inits == 1
