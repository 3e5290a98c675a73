"""Run-time bookkeeping of the GPU driver (bench/_gpu_extract.py): the clock from the wrapper's start, the
soft time budget, the results dict R kept as JSON (rewritten after every section), RESULT lines, skips, and
the guards that print and record an error and let the run go on.

The entry point sets BUDGET_S and OUT_JSON from its options; every other module reads them through here.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from _common import value

T0 = float(os.environ.get("GPU_EXTRACT_T0") or time.time())  # the wrapper's start: the budget counts installs


class Deadline(BaseException):
    """SIGTERM from the wrapper's hard timeout: stop, write what we have."""


R: dict = {"meta": {}, "decode_cpu": {}, "compile": [], "points": [], "vectors": [], "gpu_decode": {},
           "http": [], "goals": [], "results": {}, "errors": [], "skipped": [], "sections": []}
OUT_JSON: Path | None = None
BUDGET_S = 375.0


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def elapsed() -> float:
    return time.time() - T0


def time_left() -> float:
    return BUDGET_S - elapsed()


def emit(name: str, number: float | None, unit: str = "") -> None:
    """A RESULT line (bench/_common.py's format) and the number in the JSON."""
    if number is None or (isinstance(number, float) and math.isnan(number)):
        return
    R["results"][name] = {"value": float(number), "unit": unit}
    value(name, float(number), unit)


def slug(*parts) -> str:
    return "_".join(str(p).replace("-", "_").replace(".", "") for p in parts if p != "")


def save() -> None:
    if OUT_JSON is None:
        return
    R["meta"]["elapsed_s"] = round(elapsed(), 1)
    tmp = OUT_JSON.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(R, indent=1, default=_json_default))
    tmp.replace(OUT_JSON)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def skip(what: str, why: str = "") -> None:
    why = why or f"time budget: {time_left():.0f}s left of {BUDGET_S:.0f}s"
    R["skipped"].append(f"{what}: {why}")
    log(f"SKIPPED {what} ({why})")


def run_section(name: str, fn, *args, need_s: float = 20.0):
    """Run one section guarded: errors are printed and recorded, the run goes on; skipped when out of time."""
    if time_left() < need_s:
        skip(f"section {name}")
        return None
    log(f"=== {name}")
    start = time.time()
    try:
        return fn(*args)
    except (Deadline, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - one failed section must not lose the rest of the run
        traceback.print_exc(limit=6)
        sys.stderr.flush()
        R["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:800])
        log(f"ERROR in {name}: {type(exc).__name__}: {exc}")
        return None
    finally:
        R["sections"].append({"name": name, "start_s": round(start - T0, 1), "seconds": round(time.time() - start, 1)})
        log(f"=== {name} done in {time.time() - start:.1f}s")
        save()


def guarded(what: str, fn, *args, **kwargs):
    """Run fn, print and record an error instead of raising (for one point inside a section)."""
    try:
        return fn(*args, **kwargs)
    except (Deadline, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc(limit=4)
        sys.stderr.flush()
        R["errors"].append(f"{what}: {type(exc).__name__}: {exc}"[:800])
        log(f"ERROR in {what}: {type(exc).__name__}: {exc}")
        return None
