"""30 consecutive daily partitions refreshed one after another: do the last ones cost more than the first?

Everything that grows with history is on: one instance (SQLite) collects every run's events, one output
store every partition's folders and manifests, one registry every promotion. Each partition runs
refresh_job in process (as a backfill's runs would, one at a time) and, when it promoted, the propagation the
promotion sensor requests. The figure is the mean refresh_job time of the last 5 partitions over the first 5;
a small population, tuning budget 1 and no permutation importances (``backfill_importance_rows``: 0 at every
size) keep the per-partition work small, so growth in overhead would show. The importances are fixed work per
partition that no history can make grow; at 2,000 players they were half of it (25.0 -> 12.8 s per partition,
AMD EPYC, 2026-12-06), so leaving them out also takes ~6 minutes off ``make bench``.

Each partition's run also records its steps' durations from the run's event log, and what the run spent around
them (the refresh time minus the steps': run start and end, the plan, event writes outside a step). The note
compares that first 5 vs last 5 too: the partitions' data differ (a later date has more history), so the step
work may move while Dagster's share stays flat, and the two are told apart in every run.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

from refresh_assets_tests.benchmarks.common import Row, log, with_stats

TARGET_RATIO = 1.2


def run_config(importance_rows: int | None) -> dict:
    """Budget 1 on 4,000 rows; permutation importances as the size says (None: the launchpad default)."""
    training = {"tuning_budget": 1, "cv_splits": 2, "max_training_rows": 4000}
    if importance_rows is not None:
        training["importance_rows"] = importance_rows
    return {"ops": {**{f"candidate_{a}": {"config": dict(training)}
                       for a in ("logreg", "random_forest", "hist_gb", "ensemble")},
                    "model_comparison": {"config": {"bootstrap_samples": 200}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Each step's STEP_START -> STEP_SUCCESS (or failure) seconds, from the run's event log."""
    import dagster as dg

    started: dict[str, float] = {}
    done: dict[str, float] = {}
    ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for record in instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_START, *ends}).records:
        entry = record.event_log_entry
        key = entry.dagster_event.step_key
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            started[key] = entry.timestamp
        elif key in started:
            done[key] = round(entry.timestamp - started[key], 3)
    return done


def run(size: dict) -> list[Row]:
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    partitions = size["backfill_partitions"]
    config_importances = size.get("backfill_importance_rows")
    window = min(5, partitions // 2)
    cfg = SimulationConfig(n_players=size["backfill_players"], seed=23)
    keys = [str(cfg.end_date() - dt.timedelta(days=partitions - 1 - i)) for i in range(partitions)]
    saved = {k: os.environ.get(k) for k in ("REFRESH_ASSETS_DATA_DIR", "REFRESH_ASSETS_WAREHOUSE", "DAGSTER_HOME")}
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmp:
        root = Path(tmp)
        simulate_to_duckdb(cfg, root / "raw.duckdb")
        os.environ["REFRESH_ASSETS_DATA_DIR"] = str(root)
        os.environ["REFRESH_ASSETS_WAREHOUSE"] = str(root / "raw.duckdb")
        try:
            from refresh_assets.definitions import build_defs
            from refresh_assets.local_runs import embedded_instance, tick_sensor
            from refresh_assets.resources import ArtifactStore, Registry, Warehouse

            defs = build_defs({"warehouse": Warehouse(location=str(root / "raw.duckdb")),
                               "artifacts": ArtifactStore(root=str(root / "outputs")),
                               "registry": Registry(root=str(root / "registry"))})
            instance = embedded_instance(root / "dagster_home")
            job = defs.resolve_job_def("refresh_job")
            config = run_config(config_importances)
            runs = []
            for i, key in enumerate(keys):
                start = time.perf_counter()
                result = job.execute_in_process(instance=instance, partition_key=key, run_config=config)
                refresh_seconds = time.perf_counter() - start
                steps = step_seconds(instance, result.run_id)
                start = time.perf_counter()
                propagated = tick_sensor(defs, instance, "promotion_sensor", quiet=True)
                runs.append({"partition": key, "refresh_seconds": refresh_seconds, "step_seconds": steps,
                             "around_steps_seconds": round(refresh_seconds - sum(steps.values()), 3),
                             "propagation_seconds": time.perf_counter() - start, "promoted": bool(propagated),
                             "success": result.success})
                log(f"backfill {i + 1}/{partitions} {key}: {refresh_seconds:.1f}s"
                    f"{' + propagation' if propagated else ''}")
            instance.dispose()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    if not all(r["success"] for r in runs):
        raise RuntimeError(f"backfill runs failed: {[r['partition'] for r in runs if not r['success']]}")
    first = statistics.mean(r["refresh_seconds"] for r in runs[:window])
    last = statistics.mean(r["refresh_seconds"] for r in runs[-window:])
    ratio = last / first
    around_first = statistics.mean(r["around_steps_seconds"] for r in runs[:window])
    around_last = statistics.mean(r["around_steps_seconds"] for r in runs[-window:])
    log(f"backfill: last {window} {last:.1f}s vs first {window} {first:.1f}s per partition (x{ratio:.2f})")
    return [with_stats(Row(
        name="backfill_flatness",
        what=f"{partitions} consecutive daily partitions of refresh_job, one instance/store/registry "
             f"({cfg.n_players:,} players, tuning budget 1"
             f"{', no permutation importances' if config_importances == 0 else ''}): mean seconds per partition of "
             f"the last {window}",
        value=round(last, 3), unit="s", target=f"last {window} <= {TARGET_RATIO}x the first {window}",
        met=ratio <= TARGET_RATIO, baseline=round(first, 3),
        baseline_what=f"mean seconds per partition of the first {window} (s)", ratio=round(ratio, 3),
        ratio_what=f"last {window} / first {window}", runs=runs,
        notes=f"{sum(r['promoted'] for r in runs)} of {partitions} partitions promoted and were propagated "
              "(propagation timed separately, not in the figure); Dagster around the steps (refresh time minus "
              f"the steps' own, event log): first {window} {around_first:.2f}s, last {window} {around_last:.2f}s per "
              f"partition; steps' own time first {window} {first - around_first:.1f}s, last {window} "
              f"{last - around_last:.1f}s",
    ))]
