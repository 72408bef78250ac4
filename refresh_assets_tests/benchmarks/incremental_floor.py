"""How fast could a warm dataset step be at best? A measurement for issue 21's ``dataset_incremental`` (target 5x),
not product code and not part of ``make bench``.

The product stores a dataset as three whole Parquet files, so a warm build still converts and encodes every row.
This measures the layout that would avoid it, on the 200k-player benchmark warehouse (``bench_scale.cached_warehouse``,
simulated once, ~20 s): every snapshot stored as its own Parquet part, a warm build linking last week's parts
(``os.link``) and computing only the new snapshots, the manifest taking its counts from each part's metadata and the
training frame's distinct entities from the parts' ``entity_id`` columns. Cold and warm must give the same parts'
hash and statistics. Left out, so the figures are a floor: pandas conversion, the blocking rules, the audit record,
Dagster. Also printed: the query's time against the number of snapshots it is asked for.

    .venv/bin/python -m refresh_assets_tests.benchmarks.incremental_floor
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPEATS = 3


def _query(con, sql: str, spec, days: list[dt.date]) -> dict:
    """The query's rows for ``days``, one Arrow slice per snapshot date, rows in (as_of_date, entity_id) order."""
    import numpy as np
    import pyarrow.compute as pc

    from refresh_assets.core import features

    relation, names, types = features.open_relation(con, sql, {
        "as_of_date": spec.as_of_date, "snapshot_dates": sorted(days), "label_horizon_days": spec.label_horizon_days})
    table = features.fetch_arrow(relation, names, types)
    table = table.take(pc.sort_indices(table, sort_keys=[("as_of_date", "ascending"), ("entity_id", "ascending")]))
    edges = np.array([*sorted(days), dt.date.max], dtype="datetime64[D]")
    bounds = table.column("as_of_date").to_numpy().astype("datetime64[D]").searchsorted(edges)
    return {day: table.slice(bounds[i], bounds[i + 1] - bounds[i]) for i, day in enumerate(sorted(days))}


def _write_part(folder: Path, day: dt.date, part) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from refresh_assets.core.artifacts import sha256_file

    path = folder / f"{day}.parquet"
    pq.write_table(part, path)
    meta = {"rows": part.num_rows, "label_sum": pc.sum(part.column("label")).as_py() or 0,
            "nulls": {name: part.column(name).null_count for name in part.column_names}, "sha256": sha256_file(path)}
    (folder / f"{day}.json").write_text(json.dumps(meta))
    return meta


def _train_entities(folder: Path, days: list[dt.date]) -> int:
    import numpy as np
    import pyarrow.parquet as pq

    ids = np.concatenate([pq.ParquetFile(folder / f"{day}.parquet").read(columns=["entity_id"]).column(0).to_numpy()
                          for day in days])
    ids.sort()
    return int((np.diff(ids) != 0).sum() + (len(ids) > 0))


def build(warehouse: Path, spec, plan, sql: str, cache: Path, out: Path, compute: list[dt.date]) -> tuple[dict, str, dict]:
    """One build of the parts layout: (seconds per phase, the parts' hash, the statistics)."""
    from refresh_assets.core import features, snapshot_cache

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with features.open_source(warehouse) as con:
        at = time.perf_counter()
        snapshot_cache.raw_fingerprint(con, snapshot_cache.date_columns_of(con))
        seconds["fingerprint"] = time.perf_counter() - at
        at = time.perf_counter()
        parts = _query(con, sql, spec, compute)
        seconds["sql"] = time.perf_counter() - at
    at = time.perf_counter()
    metas = {day: _write_part(cache, day, part) for day, part in parts.items()}
    seconds["write_new_parts"] = time.perf_counter() - at
    at = time.perf_counter()
    out.mkdir(parents=True)
    for day in plan.all_dates():
        metas.setdefault(day, json.loads((cache / f"{day}.json").read_text()))
        os.link(cache / f"{day}.parquet", out / f"{day}.parquet")
    seconds["link_and_read_metadata"] = time.perf_counter() - at
    at = time.perf_counter()
    stats = {"train_rows": sum(metas[d]["rows"] for d in plan.train_dates),
             "train_labels": sum(metas[d]["label_sum"] for d in plan.train_dates),
             "train_entities": _train_entities(out, plan.train_dates)}
    seconds["stats"] = time.perf_counter() - at
    digest = hashlib.sha256("|".join(f"{d}={metas[d]['sha256']}" for d in plan.all_dates()).encode()).hexdigest()
    (out / "manifest.json").write_text(json.dumps({"parts": {str(d): metas[d] for d in plan.all_dates()},
                                                   "hash": digest, "stats": stats}))
    seconds["total"] = time.perf_counter() - started
    return seconds, digest, stats


def main() -> None:
    from refresh_assets.core import features, snapshot_cache
    from refresh_assets.core.simulate import SimulationConfig
    from refresh_assets_tests.benchmarks.bench_scale import cached_warehouse
    from refresh_assets_tests.benchmarks.common import machine

    cfg = SimulationConfig(n_players=200_000, seed=17)
    warehouse, marker = cached_warehouse(cfg)
    spec = features.DatasetSpec(as_of_date=cfg.end_date())
    plan = features.snapshot_plan(spec)
    sql, _ = features.load_query(None)
    every = plan.all_dates()
    # what a warm weekly build computes (bench_incremental: 2 of 12): D, and the date whose label just completed;
    # the gap date (next week's training date) was last week's holdout date, so it is cached already
    new = [plan.holdout_dates[-1], plan.scoring_date]
    ahead = snapshot_cache._gap_dates(spec, plan)  # a cold build computes it ahead, as the product's does
    print(f"{machine()['cpu']}, {marker['summary']['session_rows']:,} session rows; {len(every)} snapshots; cold "
          f"computes them and {[str(d) for d in ahead]} ahead, warm {[str(d) for d in new]}")
    with features.open_source(warehouse) as con:
        for days in (every[-1:], every[-2:], every[-3:], every[-6:], every):
            times = []
            for _ in range(REPEATS):
                at = time.perf_counter()
                _query(con, sql, spec, days)
                times.append(time.perf_counter() - at)
            print(f"  query for {len(days):2d} snapshot(s): {statistics.median(times):.3f}s (median of {REPEATS})")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="incremental_floor_") as tmp:
        root = Path(tmp)
        for i in range(REPEATS):
            cache = root / f"cache{i}"
            cache.mkdir()
            cold, cold_hash, cold_stats = build(warehouse, spec, plan, sql, cache, root / f"cold{i}", every + ahead)
            for day in new:  # last week's cache: every snapshot but this week's new ones
                (cache / f"{day}.parquet").unlink()
                (cache / f"{day}.json").unlink()
            warm, warm_hash, warm_stats = build(warehouse, spec, plan, sql, cache, root / f"warm{i}", new)
            if (cold_hash, cold_stats) != (warm_hash, warm_stats):
                raise AssertionError(f"warm and cold parts differ: {cold_stats} {warm_stats}")
            ratios.append(cold["total"] / warm["total"])
            for name, seconds in (("cold", cold), ("warm", warm)):
                print(f"  repeat {i + 1} {name}: " + ", ".join(f"{k} {v:.3f}s" for k, v in seconds.items()))
    print(f"cold / warm: {', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
