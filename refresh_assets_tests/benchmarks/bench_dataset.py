"""The dataset build for one partition from ~10M session rows: DuckDB SQL against the same features in pandas.

Both start from the raw tables on disk and end with the same checked training / holdout / scoring frames
(``core.features.check_contract`` + ``split_dataset``): DuckDB runs the packaged query script on the
warehouse file (``core.features.build_dataset``, what the dataset asset does); pandas reads the same tables
from Parquet (its native fast format) and computes the features with ``pandas_features.build_features``,
which a unit test holds equal to the SQL output. The pandas compute time without the read is recorded too.
"""

from __future__ import annotations


import statistics
import tempfile
import time
from pathlib import Path

from refresh_assets_tests.benchmarks.common import Row, log, with_stats

TARGET_SPEEDUP = 5.0
TARGET_SECONDS = 10.0


def _duckdb_build(warehouse: Path, spec) -> int:
    from refresh_assets.core import features

    with features.open_source(warehouse) as con:
        frames = features.build_dataset(con, spec)
    return len(frames.train) + len(frames.holdout) + len(frames.scoring)


def _pandas_build(parquet_dir: Path, spec) -> tuple[int, float]:
    import pandas as pd

    from refresh_assets.core import features
    from refresh_assets_tests.benchmarks.pandas_features import build_features

    raw = {name: pd.read_parquet(parquet_dir / f"{name}.parquet") for name in ("players", "sessions", "purchases")}
    start = time.perf_counter()
    plan = features.snapshot_plan(spec)
    rows = build_features(raw["players"], raw["sessions"], raw["purchases"], spec.as_of_date, plan.all_dates(),
                          spec.label_horizon_days)
    frames = features.split_dataset(features.check_contract(rows), spec, plan, "pandas")
    compute = time.perf_counter() - start
    return len(frames.train) + len(frames.holdout) + len(frames.scoring), compute


def run(size: dict) -> list[Row]:
    import duckdb

    from refresh_assets.core import features
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    cfg = SimulationConfig(n_players=size["dataset_players"], seed=5)
    spec = features.DatasetSpec(as_of_date=cfg.end_date())
    with tempfile.TemporaryDirectory(prefix="bench_dataset_") as tmp:
        root = Path(tmp)
        warehouse = root / "raw.duckdb"
        summary = simulate_to_duckdb(cfg, warehouse)
        con = duckdb.connect(str(warehouse), read_only=True)
        # Dates as TIMESTAMP so that pandas reads datetime64 columns directly (no per-row conversion).
        for table, date_column in (("players", "install_date"), ("sessions", "session_date"),
                                   ("purchases", "purchase_date")):
            con.execute(f"COPY (SELECT * REPLACE (CAST({date_column} AS TIMESTAMP) AS {date_column}) FROM {table}) "
                        f"TO '{root / (table + '.parquet')}' (FORMAT parquet)")
        con.close()
        sessions = summary["session_rows"]
        log(f"dataset: {sessions:,} session rows, {summary['players']:,} players; partition {spec.as_of_date}")
        _duckdb_build(warehouse, spec)  # warm the file cache for both
        runs = []
        for i in range(size["dataset_repeats"]):
            first, second = ("duckdb", "pandas") if i % 2 == 0 else ("pandas", "duckdb")
            measured = {}
            for engine in (first, second):
                start = time.perf_counter()
                if engine == "duckdb":
                    measured["duckdb_rows"] = _duckdb_build(warehouse, spec)
                else:
                    measured["pandas_rows"], measured["pandas_compute_seconds"] = _pandas_build(root, spec)
                measured[f"{engine}_seconds"] = time.perf_counter() - start
            if measured["duckdb_rows"] != measured["pandas_rows"]:
                raise AssertionError(f"the two builds disagree on the row count: {measured}")
            runs.append({**measured, "speedup": measured["pandas_seconds"] / measured["duckdb_seconds"],
                         "speedup_vs_compute_only": measured["pandas_compute_seconds"] / measured["duckdb_seconds"]})
            log(f"dataset repeat {i + 1}: duckdb {measured['duckdb_seconds']:.2f}s, pandas "
                f"{measured['pandas_seconds']:.2f}s (compute {measured['pandas_compute_seconds']:.2f}s)")
    value = statistics.median(r["duckdb_seconds"] for r in runs)
    speedup = statistics.median(r["speedup"] for r in runs)
    return [with_stats(Row(
        name="dataset_build",
        what=f"dataset build for one partition from {sessions:,} session rows "
             f"({runs[0]['duckdb_rows']:,} feature rows out), DuckDB",
        value=round(value, 3), unit="s", target=f">= {TARGET_SPEEDUP}x faster than pandas and <= {TARGET_SECONDS} s",
        met=speedup >= TARGET_SPEEDUP and value <= TARGET_SECONDS,
        baseline=round(statistics.median(r["pandas_seconds"] for r in runs), 3),
        baseline_what="the same features in pandas, reading the same tables from Parquet (s)",
        ratio=round(speedup, 3), ratio_what="pandas time / DuckDB time (speedup)", runs=runs,
    ))]



