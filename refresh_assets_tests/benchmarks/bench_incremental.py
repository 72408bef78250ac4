"""The dataset step of a warm weekly refresh against a cold build of the same partition (the snapshot cache).

Both run the real ``training_dataset`` asset in this process (``dg.materialize``, the launchpad defaults) on the
same simulated warehouse: cold, into an empty output store; warm, into a store that holds the cache of the
refresh one week earlier (built first, not timed). The figure is the step's own time from its manifest
(``timings_seconds.total``: query or cache, frame hashes, Parquet writes, the blocking rules, manifest), so the
Dagster run around the step does not count for either. The two datasets must have the same hash.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
from pathlib import Path

from refresh_assets_tests.benchmarks.common import Row, log, with_stats

TARGET_SPEEDUP = 5.0


def _step(warehouse: Path, outputs: Path, partition: str) -> dict:
    """Materialize training_dataset for one partition; its manifest's timings and hash."""
    import dagster as dg

    from refresh_assets.assets.dataset import training_dataset
    from refresh_assets.core.artifacts import OutputStore
    from refresh_assets.resources import ArtifactStore, Warehouse

    result = dg.materialize([training_dataset], partition_key=partition, resources={
        "warehouse": Warehouse(location=str(warehouse)), "artifacts": ArtifactStore(root=str(outputs))},
        raise_on_error=True)
    assert result.success
    store = OutputStore(outputs)
    manifest = store.read_manifest(store.list_outputs("training_dataset", partition)[-1])
    cache = manifest["snapshot_cache"]
    return {"seconds": manifest["timings_seconds"]["total"], "query_seconds": manifest["timings_seconds"]["query"],
            "dataset_hash": manifest["dataset_hash"], "computed": len(cache["computed"]),
            "reused": len(cache["reused"]), "fingerprint_seconds": cache["fingerprint_seconds"]}


def run(size: dict) -> list[Row]:
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    cfg = SimulationConfig(n_players=size["refresh_players"], seed=17)
    partition = cfg.end_date()
    previous = str(partition - dt.timedelta(days=7))
    with tempfile.TemporaryDirectory(prefix="bench_incremental_") as tmp:
        root = Path(tmp)
        if cfg.n_players >= 100_000:  # bench_refresh's warehouse, simulated once into data/bench and reused
            from refresh_assets_tests.benchmarks.bench_scale import cached_warehouse

            warehouse, marker = cached_warehouse(cfg)
            summary = marker["summary"]
        else:
            warehouse = root / "raw.duckdb"
            summary = simulate_to_duckdb(cfg, warehouse)
        log(f"incremental: {summary['session_rows']:,} session rows; partition {partition} after {previous}")
        _step(warehouse, root / "warm-up", str(partition))  # file cache and imports warm for both
        runs = []
        for i in range(size.get("incremental_repeats", 3)):
            measured = {}
            for mode in (("cold", "warm") if i % 2 == 0 else ("warm", "cold")):
                outputs = root / f"{mode}-{i}"
                if mode == "warm":
                    _step(warehouse, outputs, previous)  # last week's refresh fills the cache (not timed)
                measured[mode] = _step(warehouse, outputs, str(partition))
            cold, warm = measured["cold"], measured["warm"]
            if cold["dataset_hash"] != warm["dataset_hash"]:
                raise AssertionError(f"warm and cold datasets differ: {json.dumps(measured)}")
            runs.append({"cold_seconds": cold["seconds"], "warm_seconds": warm["seconds"],
                         "speedup": cold["seconds"] / warm["seconds"],
                         "cold_query_seconds": cold["query_seconds"], "warm_query_seconds": warm["query_seconds"],
                         "query_speedup": cold["query_seconds"] / warm["query_seconds"],
                         "warm_computed": warm["computed"], "warm_reused": warm["reused"],
                         "fingerprint_seconds": warm["fingerprint_seconds"]})
            log(f"incremental repeat {i + 1}: cold {cold['seconds']:.2f}s (query {cold['query_seconds']:.2f}s), warm "
                f"{warm['seconds']:.2f}s (query {warm['query_seconds']:.2f}s, {warm['computed']} computed, "
                f"{warm['reused']} reused, fingerprint {warm['fingerprint_seconds']:.2f}s)")
    speedup = statistics.median(r["speedup"] for r in runs)
    return [with_stats(Row(
        name="dataset_incremental",
        what=f"training_dataset step of a warm weekly refresh (cache of {previous}) vs a cold build of {partition} "
             f"({cfg.n_players:,} players simulated, {summary['session_rows']:,} session rows), same dataset hash; "
             f"{runs[0]['warm_computed']} of {runs[0]['warm_computed'] + runs[0]['warm_reused']} snapshots computed",
        value=round(statistics.median(r["warm_seconds"] for r in runs), 3), unit="s",
        target=f">= {TARGET_SPEEDUP}x faster than the cold step, same dataset hash",
        met=speedup >= TARGET_SPEEDUP,
        baseline=round(statistics.median(r["cold_seconds"] for r in runs), 3),
        baseline_what="the same step, cold (empty output store) (s)",
        ratio=round(speedup, 3), ratio_what="cold step / warm step (speedup)", runs=runs,
        notes=f"query phase alone (fingerprint + cache + SQL): {statistics.median(r['query_speedup'] for r in runs):.2f}x "
              f"(cold {statistics.median(r['cold_query_seconds'] for r in runs):.2f}s, warm "
              f"{statistics.median(r['warm_query_seconds'] for r in runs):.2f}s)",
    ))]
