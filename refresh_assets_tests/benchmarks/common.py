"""What every benchmark shares: sizes, a result row, repeat statistics, and what machine ran it.

A row compares a figure with its baseline measured in the same run (these machines are noisy, so a ratio
of two timings taken side by side means more than either timing alone). ``runs`` keeps every repeat.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]

#: Sizes per mode. ``full`` is what the issue's targets are about; ``quick`` checks the suite end to end in a
#: few minutes; ``tiny`` is the CI smoke run (scripts must not rot; figures mean nothing there).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        # three repeats of the 200k refresh (the brief's minimum for a full refresh; two left refresh_inprocess's
        # 1.15x target to the median of 1.28 and 1.02)
        "refresh_players": 200_000, "refresh_repeats": 3, "refresh_budget": None, "small_refresh_repeats": 3,
        "dataset_players": 100_000, "dataset_repeats": 5,
        "drift_rows": 1_000_000, "drift_repeats": 3,
        "load_repeats": 7,
        "scoring_rows": 1_000_000, "scoring_repeats": 5, "scoring_players": 6_000,
        "realtime_requests": 2_000, "realtime_inprocess_calls": 500, "realtime_batch_repeats": 5,
        # no permutation importances in the backfill (as at the smaller sizes): fixed work per partition, about
        # half of it at 2,000 players (25.0 -> 12.8 s, AMD EPYC), that no history can make grow (bench_backfill.py)
        "backfill_players": 2_000, "backfill_partitions": 30, "backfill_importance_rows": 0,
        "sensor_history": 1_000, "sensor_baseline": 10, "sensor_repeats": 20,
    },
    "quick": {
        "refresh_players": 600, "refresh_repeats": 1, "refresh_budget": 1, "small_refresh_repeats": 3,
        "dataset_players": 20_000, "dataset_repeats": 2,
        "drift_rows": 50_000, "drift_repeats": 2,
        "load_repeats": 3,
        "scoring_rows": 100_000, "scoring_repeats": 2, "scoring_players": 1_500,
        "realtime_requests": 500, "realtime_inprocess_calls": 200, "realtime_batch_repeats": 3,
        "backfill_players": 400, "backfill_partitions": 4, "backfill_importance_rows": 0,
        "sensor_history": 300, "sensor_baseline": 10, "sensor_repeats": 5,
    },
    "tiny": {
        "refresh_players": 600, "refresh_repeats": 1, "refresh_budget": 1, "small_refresh_repeats": 1,
        "dataset_players": 3_000, "dataset_repeats": 1,
        "drift_rows": 20_000, "drift_repeats": 1,
        "load_repeats": 1,
        "scoring_rows": 20_000, "scoring_repeats": 1, "scoring_players": 1_000,
        "realtime_requests": 100, "realtime_inprocess_calls": 50, "realtime_batch_repeats": 1,
        "backfill_players": 400, "backfill_partitions": 2, "backfill_importance_rows": 0,
        "sensor_history": 40, "sensor_baseline": 10, "sensor_repeats": 2,
        # the CI smoke run: one cold/warm pair (4 small materializations, not 10)
        "incremental_repeats": 1,
    },
}


@dataclass
class Row:
    """One line of the results table."""

    name: str
    what: str
    value: float
    unit: str
    target: str
    met: bool
    baseline: float | None = None
    baseline_what: str | None = None
    ratio: float | None = None
    ratio_what: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of repeated measurements."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def with_stats(row: Row) -> Row:
    """Fill ``row.stats`` from its runs: the spread of every numeric field the runs share."""
    if row.runs:
        keys = [k for k, v in row.runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        row.stats = {k: spread([float(r[k]) for r in row.runs]) for k in keys}
    return row


class Stopwatch:
    """``with Stopwatch() as w: ...`` then ``w.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = None
    try:
        kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
        memory_gib = round(kib / 2**20, 1)
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"hostname": platform.node(), "cpus": os.cpu_count(), "cpu": cpu, "memory_gib": memory_gib,
            "platform": platform.platform(), "python": platform.python_version(), "load_average_1m_at_start": load}


def versions() -> dict[str, str]:
    out = {}
    for dist in ("dagster", "scikit-learn", "pandas", "numpy", "duckdb", "evidently", "pyarrow", "skops"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        out["refresh-assets"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["refresh-assets"] = "unknown"
    return out


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def python() -> str:
    """The interpreter running the suite (the venv's), for the benchmarks' subprocesses."""
    return sys.executable


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
