"""The benchmarks' tiny runs, started together once per session.

Each test in this folder checks one benchmark script end to end on tiny sizes. The scripts spend most of
their time waiting (servers starting, Milvus building indexes, models loading), so they run side by side:
the first test that asks for `bench_runs` starts those whose tests were collected (a test module names its
script in `BENCH`), and each test waits for its own. Their
figures mean nothing at this size and under this sharing; the tests check that every part runs and prints
well-formed RESULT lines.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class BenchRun:
    """One benchmark subprocess: `finish()` waits for it (SIGINT past the deadline, so it cleans up)."""

    name: str
    proc: subprocess.Popen
    timeout: float
    workdir: Path
    _done: subprocess.CompletedProcess | None = None

    def finish(self) -> subprocess.CompletedProcess:
        if self._done is None:
            try:
                out, err = self.proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGINT)  # KeyboardInterrupt: its finally blocks stop its servers
                out, err = self.proc.communicate(timeout=60)
                pytest.fail(f"{self.name} ran over {self.timeout:.0f} s\n{out[-3000:]}\n{err[-3000:]}")
            self._done = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)
        return self._done

    def checked(self, script: str, mode: str = "quick") -> tuple[str, dict[str, str]]:
        """Wait; check the exit code, the MACHINE line first, the RUN line last and every RESULT line's
        machine stamp; return (stdout, {result name: its line})."""
        done = self.finish()
        out = done.stdout
        assert done.returncode == 0, f"exit {done.returncode}\n{out[-3000:]}\n{done.stderr[-3000:]}"
        lines = out.splitlines()
        assert lines[0].startswith("MACHINE ") and "cores=" in lines[0], lines[0]
        machine = re.escape(lines[0].split()[1])
        assert re.fullmatch(rf"RUN {re.escape(script)} length=\d+s mode={mode} machine={machine}", lines[-1]), \
            lines[-1]
        results = {}
        for line in lines:
            if line.startswith("RESULT "):
                assert re.search(rf" machine={machine} at=\d+s$", line), line
                results[line.split()[1]] = line
        return out, results


def _commands(workdir) -> dict[str, tuple[list[str], float, dict[str, str]]]:
    """name -> (arguments after the interpreter, timeout in seconds, extra environment)."""
    return {
        "search": (["bench/search.py", "--tiny"], 900, {}),
        "load": (["bench/load.py", "--rows", "5000", "--repeat", "1", "--index", "FLAT", "--sweep-after", "1",
                  "--ours-runs", "2"],
                 600, {"TMPDIR": str(workdir("load"))}),  # Milvus data and the bench file: checked gone after
        "scale": (["bench/scale.py", "--rows", "2000", "--dim", "256", "--queries", "20", "--modes",
                   "IVF_SQ8,BIN_ITQ256", "--search-variants", '[{"nprobe": 8}]', "--workdir", str(workdir("scale"))],
                  900, {}),
        "extract": (["bench/extract.py", "--quick", "--model", "efficientnet-lite0", "--input-size", "64",
                     "--image-scale", "1", "--workdir", str(workdir("extract"))], 600, {}),
        "extract_batch": (["bench/extract_batch.py", "--tiny", "--workdir", str(workdir("extract_batch"))], 600, {}),
        "quality": (["bench/quality.py", "--tiny", "--models", "efficientnet-lite0,raw-pixels"], 600, {}),
    }


@pytest.fixture(scope="session")
def bench_runs(request, tmp_path_factory) -> dict[str, BenchRun]:
    """The collected tests' benchmark runs, started at once; stopped at the end of the session if still running."""
    import os

    wanted = {getattr(item.module, "BENCH", None) for item in request.session.items}

    dirs: dict[str, Path] = {}

    def workdir(name: str) -> Path:
        dirs[name] = tmp_path_factory.mktemp(f"bench-{name}")
        return dirs[name]

    runs = {}
    for name, (args, timeout, env) in _commands(workdir).items():
        if name not in wanted:
            continue
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env={**os.environ, **env}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs[name] = BenchRun(name, proc, timeout, dirs.get(name, REPO))
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
            try:
                run.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                run.proc.kill()
