"""How a full refresh grows with the population: 200,000 vs 1,000,000 players, same settings (issue 21).

Row ``refresh_scale``: the full refresh (refresh_job + the propagation the promotion sensor chains), in-process
executor, each in a fresh process (bench_refresh's child and timing: wall time around the process, its peak RSS),
of ``refresh_players`` (200k at the full size) and of 5x as many (1M), simulated with the same seed and run with
the same settings, on the simulation's last day. Targets: time ratio <= 5.5 for 5x the players, peak RSS at 1M
<= 8 GiB. The 1M refresh runs once (it takes several minutes); the 200k figures are bench_refresh's
``refresh_inprocess`` repeats of the same suite run when that row ran before (``suite.run_suite`` passes the rows
measured earlier: the same players, seed, settings, child and timing, so nothing is measured twice), otherwise
(``--only refresh_scale``) one 200k refresh here. Per-step seconds come from each child's Dagster instance.
The quick and tiny sizes run 2x their refresh population instead of 5x (a smoke run, target scaled alike).

Reusing the simulated warehouse: 1M players are ~3.0M with the warm-up, 104M session rows, a 0.5 GB DuckDB file,
~4.5 minutes and ~15 GiB of memory to simulate here. ``cached_warehouse`` simulates a population of 100k players
or more once into ``data/bench/warehouse-<n>-seed<seed>/`` (``warehouse-1m-seed17``) and reuses it after:
``warehouse.duckdb`` is written atomically, then ``simulation.json`` (the SimulationConfig's fields, a sha256
of ``core/simulate.py`` and the summary) LAST; a folder is reused only when that marker exists and names the
same parameters and simulator, so a half-written or stale warehouse is never read (it is simulated again).
Delete the folder to force a fresh simulation; ``python -m refresh_assets_tests.benchmarks.bench_scale simulate
1000000`` makes it ahead of a bench run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from refresh_assets_tests.benchmarks.common import REPO, Row, log, python, with_stats

RATIO_TARGET = 5.5
MEMORY_TARGET_GIB = 8.0
SEED = 17
MARKER = "simulation.json"
WAREHOUSE = "warehouse.duckdb"
#: the large population is this many times the refresh benchmark's (1M at the full size, 200k there)
SCALE_FACTOR = 5
SMALL_SIZES_FACTOR = 2
#: populations at least this large are simulated once into data/bench and reused (smaller ones: a temp folder)
CACHE_MIN_PLAYERS = 100_000


def _simulator_hash() -> str:
    from refresh_assets.core import simulate

    return hashlib.sha256(Path(simulate.__file__).read_bytes()).hexdigest()[:16]


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else (f"{n // 1000}k" if n % 1000 == 0 else str(n))


def _params(cfg) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dataclasses.asdict(cfg).items()}


def cached_warehouse(cfg, root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The DuckDB warehouse of ``cfg``, simulated once into ``root/warehouse-<n>-seed<seed>/`` and reused after.

    Returns the warehouse path and the marker (parameters, simulator hash, summary, whether it was reused).
    """
    from refresh_assets.core.simulate import simulate_to_duckdb

    root = Path(root) if root is not None else REPO / "data" / "bench"
    folder = root / f"warehouse-{_label(cfg.n_players)}-seed{cfg.seed}"
    wanted = {"params": _params(cfg), "simulator_sha256": _simulator_hash()}
    marker = folder / MARKER
    if marker.exists() and (folder / WAREHOUSE).exists():
        kept = json.loads(marker.read_text())
        if {k: kept.get(k) for k in wanted} == wanted:
            return folder / WAREHOUSE, {**kept, "reused": True}
        log(f"scale: {folder} was simulated with other parameters or another simulator: simulating again")
    if folder.exists():
        shutil.rmtree(folder)  # stale or half-written: never read
    folder.mkdir(parents=True)
    summary = simulate_to_duckdb(cfg, folder / WAREHOUSE)
    summary["warehouse_bytes"] = (folder / WAREHOUSE).stat().st_size
    done = {**wanted, "summary": summary}
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".simulation.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(done, handle, indent=2)
    os.replace(temp, marker)  # last: its presence means the warehouse is complete
    return folder / WAREHOUSE, {**done, "reused": False}


def _step_seconds(workdir: Path) -> dict[str, float]:
    """Seconds of each successful step of every run (refresh + propagation) of a finished child's instance."""
    import dagster as dg

    from refresh_assets.local_runs import embedded_instance

    instance = embedded_instance(workdir / "dagster_home")
    try:
        out: dict[str, float] = {}
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
                event = entry.dagster_event
                out[event.step_key] = round(event.event_specific_data.duration_ms / 1000.0, 1)
        return out
    finally:
        instance.dispose()


def _warehouse(cfg, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The cached warehouse for large populations (minutes to simulate), a fresh temporary one for small ones."""
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    if cfg.n_players >= CACHE_MIN_PLAYERS:
        if cfg == SimulationConfig(n_players=cfg.n_players, seed=SEED):
            # simulated (if not cached yet) in a child process: the suite's own process never holds the ~15 GiB
            # a 1M simulation takes
            proc = subprocess.run([python(), "-m", "refresh_assets_tests.benchmarks.bench_scale", "simulate",
                                   str(cfg.n_players)], cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"simulating {cfg.n_players:,} players failed:\n{proc.stderr[-4000:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            path, marker = cached_warehouse(cfg)
            # the child simulated it or found it; here it is always found, so its word is the one that counts
            return path, {**marker, "reused": bool(child["reused"])}
        return cached_warehouse(cfg)
    path = tmp / f"raw-{cfg.n_players}.duckdb"
    return path, {"summary": simulate_to_duckdb(cfg, path), "reused": False}


def _refresh(cfg, settings: dict, tmp: Path) -> dict[str, Any]:
    """One full in-process refresh of ``cfg``'s last day in a fresh process (bench_refresh's child and timing)."""
    from refresh_assets_tests.benchmarks.bench_refresh import _one

    warehouse, info = _warehouse(cfg, tmp)
    summary = info["summary"]
    log(f"scale: {cfg.n_players:,} players ({summary['players']:,} with the warm-up, {summary['session_rows']:,} "
        f"session rows), warehouse {'reused' if info['reused'] else 'simulated'} in {warehouse.parent}")
    root = tmp / f"run-{cfg.n_players}"
    root.mkdir()
    load = os.getloadavg()[0]
    done = _one("inprocess", warehouse, str(cfg.end_date()), settings, root)
    workdir = next(root.glob("inprocess_*"))
    steps = _step_seconds(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    log(f"scale: {cfg.n_players:,} players in {done['seconds']:.1f}s, peak {done['peak_rss_gib']:.2f} GiB "
        f"(load {load:.2f} -> {os.getloadavg()[0]:.2f}); steps {steps}")
    return {"players": cfg.n_players, "session_rows": summary["session_rows"], "seconds": done["seconds"],
            "peak_rss_gib": done["peak_rss_gib"], "promoted": done["promoted"], "steps": steps,
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "warehouse_reused": info["reused"]}


def _shared_small(earlier: dict | None, players: int, settings: dict) -> list[dict[str, Any]] | None:
    """The small population's figures from bench_refresh's ``refresh_inprocess`` row of the same suite run (same
    players, seed, settings, child and timing), so they are not measured twice; None when it did not run."""
    row = (earlier or {}).get("refresh_inprocess")
    if row is None or not row.runs or f"{players:,} players" not in row.what:
        return None
    if f"tuning budget {settings['training']['tuning_budget']})" not in row.what:
        return None
    return [{"players": players, "seconds": r["seconds"], "peak_rss_gib": r["peak_rss_gib"],
             "promoted": r["promoted"], "shared_with": "refresh_inprocess"} for r in row.runs]


#: ``suite.run_suite`` passes the rows measured before this module in the same run (``run(size, rows)``).
READS_EARLIER_ROWS = True


def run(size: dict, earlier: dict | None = None) -> list[Row]:
    import statistics

    from refresh_assets.core.simulate import SimulationConfig
    from refresh_assets_tests.benchmarks.bench_refresh import settings_for

    small_players = int(size["refresh_players"])
    # quick and tiny sizes (a tuning budget is set) only check that the row runs: 2x, not 5x, to stay cheap in CI
    factor = SCALE_FACTOR if size["refresh_budget"] is None else SMALL_SIZES_FACTOR
    large_players = int(size.get("scale_players", factor * small_players))
    settings = settings_for(size["refresh_budget"])
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        small_runs = _shared_small(earlier, small_players, settings)
        if small_runs is None:
            small_runs = [_refresh(SimulationConfig(n_players=small_players, seed=SEED), settings, Path(tmp))]
        else:
            log(f"scale: {small_players:,} players: bench_refresh's refresh_inprocess of this run, "
                f"{[round(r['seconds'], 1) for r in small_runs]} s")
        large = _refresh(SimulationConfig(n_players=large_players, seed=SEED), settings, Path(tmp))
    small_seconds = statistics.median(r["seconds"] for r in small_runs)
    small_peak = max(r["peak_rss_gib"] for r in small_runs)
    ratio = large["seconds"] / small_seconds
    factor = large_players / small_players
    ratio_target = round(RATIO_TARGET * factor / SCALE_FACTOR, 3)  # 5.5x for 5x the players
    met = ratio <= ratio_target and large["peak_rss_gib"] <= MEMORY_TARGET_GIB
    small_steps = small_runs[0].get("steps")
    notes = (f"{large_players:,} players: {large['session_rows']:,} session rows, peak RSS "
             f"{large['peak_rss_gib']:.2f} GiB (target <= {MEMORY_TARGET_GIB:g}), {large['seconds']:.0f} s, one run "
             f"(load average {large['load_before']:.2f} before, {large['load_after']:.2f} after); "
             f"{small_players:,} players: median {small_seconds:.0f} s of {len(small_runs)} run(s), peak "
             f"{small_peak:.2f} GiB ({'bench_refresh refresh_inprocess, same run' if 'shared_with' in small_runs[0] else 'measured here'}). "
             f"Steps at {large_players:,} (s): " + ", ".join(f"{k} {v:g}" for k, v in large["steps"].items())
             + (f". Steps at {small_players:,} (s): " + ", ".join(f"{k} {v:g}" for k, v in small_steps.items())
                if small_steps else "")
             + f". The {large_players:,}-player warehouse was "
             + ("reused from" if large["warehouse_reused"] else "simulated into")
             + f" data/bench/warehouse-{_label(large_players)}-seed{SEED}/ (see bench_scale.py)")
    return [with_stats(Row(
        name="refresh_scale",
        what=f"full refresh (refresh_job + propagation, in-process executor, fresh process, tuning budget "
             f"{settings['training']['tuning_budget']}) of {large_players:,} players simulated vs "
             f"{small_players:,} ({factor:g}x), same seed and settings",
        value=round(large["seconds"], 1), unit="s",
        target=f"time ratio <= {ratio_target:g}x for {factor:g}x the players, peak RSS at {large_players:,} <= "
               f"{MEMORY_TARGET_GIB:g} GiB",
        met=met,
        baseline=round(small_seconds, 1), baseline_what=f"the same refresh of {small_players:,} players (s)",
        ratio=round(ratio, 3), ratio_what=f"{large_players:,}-player time / {small_players:,}-player time",
        runs=[{"ratio": ratio, "seconds": large["seconds"], "small_seconds": small_seconds,
               "peak_rss_gib": large["peak_rss_gib"], "small_peak_rss_gib": small_peak,
               "load_before": large["load_before"], "load_after": large["load_after"]}],
        notes=notes,
    ))]


if __name__ == "__main__":  # simulate (or find) the cached warehouse: python -m ...bench_scale simulate 1000000
    import resource
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "simulate":
        from refresh_assets.core.simulate import SimulationConfig

        started = time.perf_counter()
        path, info = cached_warehouse(SimulationConfig(n_players=int(sys.argv[2]), seed=SEED))
        print(json.dumps({"path": str(path), **info, "wall_seconds": round(time.perf_counter() - started, 1),
                          "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
