"""The measurement of benchmarks/incremental_floor.py is of the right thing: its parts hold the product's rows, and
a warm build of parts, computing only the two new snapshots, equals a cold one."""

from pathlib import Path

import pytest

from refresh_assets.core import features, snapshot_cache
from refresh_assets_tests.benchmarks import incremental_floor


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    cfg = SimulationConfig(n_players=1500, days=150, seed=11, warmup_days=120)
    path = tmp_path_factory.mktemp("incremental_floor") / "raw.duckdb"
    simulate_to_duckdb(cfg, path)
    return path, cfg.end_date()


def test_warm_parts_equal_cold_parts_and_hold_the_products_rows(raw, tmp_path, monkeypatch):
    warehouse, as_of = raw
    spec = features.DatasetSpec(as_of_date=as_of)
    plan = features.snapshot_plan(spec)
    sql, _ = features.load_query(None)
    every, new = plan.all_dates(), [plan.holdout_dates[-1], plan.scoring_date]
    ahead = snapshot_cache._gap_dates(spec, plan)
    written = []
    write_part = incremental_floor._write_part
    monkeypatch.setattr(incremental_floor, "_write_part",
                        lambda folder, day, part: written.append(day) or write_part(folder, day, part))
    cache = tmp_path / "cache"
    cache.mkdir()

    _, cold_hash, cold_stats = incremental_floor.build(Path(warehouse), spec, plan, sql, cache, tmp_path / "cold",
                                                       every + ahead)
    assert sorted(written) == sorted(every + ahead)
    for day in new:
        (cache / f"{day}.parquet").unlink()
        (cache / f"{day}.json").unlink()
    written.clear()
    _, warm_hash, warm_stats = incremental_floor.build(Path(warehouse), spec, plan, sql, cache, tmp_path / "warm", new)
    assert sorted(written) == sorted(new)
    assert (warm_hash, warm_stats) == (cold_hash, cold_stats)

    with features.open_source(warehouse) as con:
        frames = features.build_dataset(con, spec)
    assert cold_stats == {"train_rows": len(frames.train), "train_labels": int(frames.train["label"].sum()),
                          "train_entities": frames.stats["train"]["entities"]}
