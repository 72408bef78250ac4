"""The fixed tax of a small refresh: 600 players, against the same work as a plain Python script (issue 21).

Rows ``refresh_small_inprocess`` / ``refresh_small_multiprocess``: bench_refresh's three ways (plain script,
``execute_in_process``, the multiprocess executor), each in a fresh process with an empty data folder, wall time
around the process, in rotating order within each repeat, but always at 600 players and tuning budget 1 (no
permutation importances, 200 bootstrap samples: bench_refresh's quick settings), whatever the suite's size. At
this size the data costs little, so what Dagster adds (start-up, the instance and its event writes, the audit
record, reading inputs back, step processes) is most of the difference. Targets: <= 1.25x the script in process,
<= 1.5x multiprocess.

Three repeats at the quick and full sizes, one at tiny (the CI smoke run). When bench_refresh ran before in the
same suite run with this very workload (the quick and tiny sizes: 600 players, budget 1), its repeats count as
repeats here (same child, settings and timing: nothing measured twice) and only the missing ones run.

The real-time scorer's conformance test must meet a latency bar (p99 <= 10 ms by default) for the propagation to
succeed; on a shared 2-core machine a neighbour can push one request in a hundred over it. This benchmark measures
time, not latency (``realtime_latency`` does), so unless REFRESH_ASSETS_REALTIME_P99_MS is set it runs with a bar
of 1,000 ms: the same work (the test still runs and records its p99), in all three ways alike.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refresh_assets_tests.benchmarks.bench_refresh import MODES, _one, settings_for
from refresh_assets_tests.benchmarks.common import Row, log, with_stats

PLAYERS = 600
BUDGET = 1
SEED = 17
TARGETS = {"inprocess": 1.25, "multiprocess": 1.5}
LENIENT_P99_MS = "1000"
#: the suite passes the rows measured before this module in the same run (bench_refresh's, when its workload is ours)
READS_EARLIER_ROWS = True


def _repeats(size: dict) -> int:
    return int(size.get("small_refresh_repeats", 3))


@contextmanager
def _lenient_latency_bar():
    before = os.environ.get("REFRESH_ASSETS_REALTIME_P99_MS")
    if before is None:
        os.environ["REFRESH_ASSETS_REALTIME_P99_MS"] = LENIENT_P99_MS
    try:
        yield os.environ["REFRESH_ASSETS_REALTIME_P99_MS"]
    finally:
        if before is None:
            os.environ.pop("REFRESH_ASSETS_REALTIME_P99_MS", None)


def _earlier_repeats(size: dict, earlier: dict | None) -> list[dict[str, dict]]:
    """bench_refresh's repeats of this same run, when it refreshed our population with our settings."""
    if not earlier or size.get("refresh_players") != PLAYERS or size.get("refresh_budget") != BUDGET:
        return []
    inproc, multi = earlier.get("refresh_inprocess"), earlier.get("refresh_multiprocess")
    if inproc is None or multi is None or not inproc.runs or len(inproc.runs) != len(multi.runs):
        return []
    return [{"script": {"seconds": a["script_seconds"], "promoted": a["script_promoted"]},
             "inprocess": {"seconds": a["seconds"], "promoted": a["promoted"]},
             "multiprocess": {"seconds": b["seconds"], "promoted": b["promoted"]}, "from": "bench_refresh"}
            for a, b in zip(inproc.runs, multi.runs)]


def run(size: dict, earlier: dict | None = None) -> list[Row]:
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    settings = settings_for(BUDGET)
    cfg = SimulationConfig(n_players=PLAYERS, seed=SEED)
    partition = str(cfg.end_date())
    repeats = _earlier_repeats(size, earlier)[:_repeats(size)]
    load = []
    with tempfile.TemporaryDirectory(prefix="bench_small_refresh_") as tmp, _lenient_latency_bar() as p99_bar:
        root = Path(tmp)
        warehouse = root / "raw.duckdb"
        summary = simulate_to_duckdb(cfg, warehouse)
        log(f"small refresh: {summary['players']:,} players, {summary['session_rows']:,} session rows; "
            f"{len(repeats)} repeat(s) from bench_refresh, {_repeats(size) - len(repeats)} to run")
        for i in range(len(repeats), _repeats(size)):
            order = MODES[i % 3:] + MODES[:i % 3]
            done: dict[str, Any] = {}
            for mode in order:
                load.append(os.getloadavg()[0])
                done[mode] = _one(mode, warehouse, partition, settings, root)
                log(f"small refresh repeat {i + 1}: {mode} {done[mode]['seconds']:.1f}s, promoted {done[mode]['promoted']}")
            repeats.append(done)
    rows = []
    for mode in ("inprocess", "multiprocess"):
        runs = [{"seconds": r[mode]["seconds"], "script_seconds": r["script"]["seconds"],
                 "ratio": r[mode]["seconds"] / r["script"]["seconds"], "promoted": r[mode]["promoted"],
                 "script_promoted": r["script"]["promoted"], "from": r.get("from", "here")} for r in repeats]
        ratio = statistics.median(r["ratio"] for r in runs)
        rows.append(with_stats(Row(
            name=f"refresh_small_{mode}",
            what=f"full refresh of one partition at {PLAYERS:,} players ({summary['session_rows']:,} session rows, "
                 f"tuning budget {BUDGET}), {'in-process' if mode == 'inprocess' else 'multiprocess'} executor, "
                 "fresh process: the fixed cost of a small refresh",
            value=round(statistics.median(r["seconds"] for r in runs), 2), unit="s",
            target=f"<= {TARGETS[mode]}x the plain script", met=ratio <= TARGETS[mode],
            baseline=round(statistics.median(r["script_seconds"] for r in runs), 2),
            baseline_what="the same work as a plain Python script in one process (s)",
            ratio=round(ratio, 3), ratio_what="Dagster time / script time, per repeat (median)", runs=runs,
            notes=(f"{len(runs)} repeat(s) ({sum(r['from'] == 'bench_refresh' for r in runs)} shared with "
                   f"bench_refresh); conformance latency bar {p99_bar} ms"
                   + (f"; 1-minute load {min(load):.2f}-{max(load):.2f} during the repeats run here" if load else "")),
        )))
    return rows
