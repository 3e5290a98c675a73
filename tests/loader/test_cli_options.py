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


@pytest.mark.parametrize("flag, in_flight", [([], ImportOptions.in_flight), (["--in-flight", "1"], 1)])
def test_in_flight_reaches_the_import(monkeypatch, tmp_path, flag, in_flight):
    write_classic(tmp_path / "a.h5", 5, dim=4)
    seen = []
    real = cli.import_h5
    monkeypatch.setattr(cli, "import_h5", lambda path, catalog, opts: seen.append(opts) or real(path, catalog, opts))
    res = CliRunner().invoke(cli.cli, ["import", str(tmp_path / "a.h5"), "--dry-run", *flag])
    assert res.exit_code == 0, res.output
    assert [o.in_flight for o in seen] == [in_flight]


def test_in_flight_out_of_range_is_a_usage_error(tmp_path):
    write_classic(tmp_path / "a.h5", 5, dim=4)
    res = CliRunner().invoke(cli.cli, ["import", str(tmp_path / "a.h5"), "--dry-run", "--in-flight", "0"])
    assert res.exit_code == 2 and "--in-flight" in res.output
