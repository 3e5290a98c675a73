"""How the command line builds ImportOptions from flags and environment (no servers)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from catalog.milvus23 import RESTART_GRACE_S
from loader import cli
from loader.options import ImportOptions
from tests.loader.conftest import write_classic


@pytest.mark.parametrize("env, grace", [(None, RESTART_GRACE_S), ("", RESTART_GRACE_S), ("5", 5.0), ("0", 0.0)])
def test_restart_grace_is_read_when_the_options_are_built(monkeypatch, env, grace):
    if env is None:
        monkeypatch.delenv("LOADER_RESTART_GRACE", raising=False)
    else:
        monkeypatch.setenv("LOADER_RESTART_GRACE", env)
    assert cli._settings().restart_grace == grace
    assert ImportOptions().restart_grace == RESTART_GRACE_S == 40  # the library default, env or not


@pytest.mark.parametrize("bad", ["soon", "-1", "inf", "nan"])
def test_a_bad_restart_grace_is_a_usage_error(monkeypatch, tmp_path, bad):
    write_classic(tmp_path / "a.h5", 5, dim=4)
    monkeypatch.setenv("LOADER_RESTART_GRACE", bad)
    res = CliRunner().invoke(cli.cli, ["import", str(tmp_path / "a.h5"), "--dry-run"])
    assert res.exit_code == 2
    assert "Error: LOADER_RESTART_GRACE must be a number" in res.output and "Received: " in res.output
