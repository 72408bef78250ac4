"""The snapshot cache (core/snapshot_cache.py): a warm build equals a cold one bit for bit, and changed raw rows
invalidate exactly the snapshots the query contract lets read them."""

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from refresh_assets.core import features, snapshot_cache as sc
from refresh_assets.core.artifacts import OutputStore, frame_hash

D = dt.date(2026, 5, 31)
WEEK = dt.timedelta(days=7)
HORIZON = dt.timedelta(days=14)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    path = tmp_path_factory.mktemp("snapshot_cache") / "raw.duckdb"
    simulate_to_duckdb(SimulationConfig(n_players=1500, days=150, seed=11, warmup_days=120), path)
    return path


@pytest.fixture
def warehouse(raw, tmp_path) -> Path:
    """A private copy: tests add late rows to it."""
    copy = tmp_path / "raw.duckdb"
    shutil.copy(raw, copy)
    return copy


def hashes(frames) -> dict:
    return {name: frame_hash(getattr(frames, name)) for name in ("train", "holdout", "scoring")}


def cold_reference(warehouse: Path, as_of: dt.date, query=None) -> dict:
    """The dataset as built with no cache at all (what every refresh did before the cache)."""
    with features.open_source(warehouse) as con:
        return hashes(features.build_dataset(con, features.DatasetSpec(as_of_date=as_of), query))


def cached_build(warehouse: Path, store_root: Path, as_of: dt.date, run: str, **kwargs):
    lines = []
    with features.open_source(warehouse) as con:
        frames, report = sc.build_dataset(
            con, features.DatasetSpec(as_of_date=as_of), sc.SnapshotCache(OutputStore(store_root), run),
            log=lambda message, level="info": lines.append((level, message)), **kwargs)
    return frames, report, lines


def test_a_warm_weekly_build_equals_a_cold_one_bit_for_bit(warehouse, tmp_path):
    store = tmp_path / "outputs"
    _, first, _ = cached_build(warehouse, store, D - WEEK, "last-week")
    assert first.reused == [] and len(first.computed) == len(features.snapshot_plan(
        features.DatasetSpec(as_of_date=D - WEEK)).all_dates())

    frames, report, lines = cached_build(warehouse, store, D, "this-week")

    plan = features.snapshot_plan(features.DatasetSpec(as_of_date=D))
    # this week costs what is new: D itself and the snapshot whose label completed (D - horizon); the last training
    # date (in last week's gap) was computed ahead by last week's build
    assert report.computed == [str(D - HORIZON), str(D)]
    assert report.why == {str(D - HORIZON): "not cached", str(D): "not cached"}
    assert sorted(report.reused + report.computed) == sorted(str(d) for d in plan.all_dates())
    assert hashes(frames) == cold_reference(warehouse, D)
    assert any("snapshot cache: 10 of 12 snapshot(s) reused" in m for _, m in lines), lines

    # the run config flag: every snapshot recomputed, the same dataset again
    frames, report, _ = cached_build(warehouse, store, D, "cold", cold=True)
    assert report.reused == [] and set(report.why.values()) == {"cold build requested"}
    assert hashes(frames) == cold_reference(warehouse, D)


def _add_session(warehouse: Path, day: dt.date) -> None:
    """A late-arriving row: a session dated ``day`` for a player already active around then."""
    con = duckdb.connect(str(warehouse))
    player = con.execute("SELECT player_id FROM sessions WHERE session_date = ? ORDER BY player_id LIMIT 1",
                         [day - dt.timedelta(days=3)]).fetchone()[0]
    con.execute("INSERT INTO sessions SELECT * REPLACE (CAST(? AS DATE) AS session_date, 777.25 AS minutes) "
                "FROM sessions WHERE player_id = ? ORDER BY session_date DESC LIMIT 1", [day, player])
    con.close()


def test_a_late_row_invalidates_exactly_the_snapshots_that_read_it(warehouse, tmp_path):
    store = tmp_path / "outputs"
    cached_build(warehouse, store, D, "first")
    _, again, _ = cached_build(warehouse, store, D, "again")
    assert again.computed == []  # nothing changed: nothing computed
    before = cold_reference(warehouse, D)

    plan = features.snapshot_plan(features.DatasetSpec(as_of_date=D))
    late = plan.train_dates[4] + dt.timedelta(days=2)  # an old date, between two training snapshots
    _add_session(warehouse, late)
    frames, report, _ = cached_build(warehouse, store, D, "after-late-row")

    # by the contract, snapshot t may read rows up to t + horizon (its label) and D's row up to D
    readers = [str(t) for t in plan.all_dates() if (t + HORIZON if t + HORIZON <= D else t) >= late]
    assert report.computed == readers
    assert set(report.why.values()) == {"raw data changed"}
    assert str(plan.train_dates[0]) in report.reused and len(report.reused) == len(plan.all_dates()) - len(readers)
    after = cold_reference(warehouse, D)
    assert after != before  # the row changed the dataset...
    assert hashes(frames) == after  # ...and the warm build has the change, bit for bit
    # one version per snapshot is kept: the superseded ones are deleted (the gap date computed ahead for next
    # week reads the late row too, so it was recomputed with the readers)
    gap = [str(t) for t in sc._gap_dates(features.DatasetSpec(as_of_date=D), plan) if t + HORIZON >= late]
    assert gap
    for folder in (tmp_path / "outputs" / sc.CACHE_ASSET).iterdir():
        versions = [p.name for p in folder.iterdir() if p.is_dir()]
        assert versions == (["after-late-row"] if folder.name[:10] in readers + gap else ["first"]), (folder, versions)


def test_a_corrected_row_invalidates_its_readers_and_nothing_else(warehouse, tmp_path):
    store = tmp_path / "outputs"
    cached_build(warehouse, store, D, "first")
    plan = features.snapshot_plan(features.DatasetSpec(as_of_date=D))
    day = plan.holdout_dates[0] - dt.timedelta(days=1)
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE sessions SET minutes = minutes + 1 WHERE rowid = (SELECT min(rowid) FROM sessions "
                "WHERE session_date = ?)", [day])
    con.close()
    frames, report, _ = cached_build(warehouse, store, D, "after-fix")
    assert report.computed == [str(t) for t in plan.all_dates() if t + HORIZON >= day]
    assert hashes(frames) == cold_reference(warehouse, D)


def test_a_damaged_entry_is_recomputed_not_read(warehouse, tmp_path):
    store = tmp_path / "outputs"
    cached_build(warehouse, store, D, "first")
    victim = D - 3 * WEEK
    entry = next((store / sc.CACHE_ASSET).glob(f"{victim}-*/first/{sc.ENTRY_FILE}"))
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))

    frames, report, lines = cached_build(warehouse, store, D, "second")
    assert report.computed == [str(victim)]
    assert any(level == "warning" and "changed after it was committed" in m for level, m in lines), lines
    assert hashes(frames) == cold_reference(warehouse, D)


def test_dropping_the_cache_at_any_time_only_makes_the_next_build_cold(warehouse, tmp_path):
    store = tmp_path / "outputs"
    cached_build(warehouse, store, D, "first")
    shutil.rmtree(store / sc.CACHE_ASSET)
    frames, report, _ = cached_build(warehouse, store, D, "second")
    assert report.reused == [] and hashes(frames) == cold_reference(warehouse, D)


def test_a_query_answering_dates_it_was_not_asked_for_is_built_without_the_cache(warehouse, tmp_path):
    query = tmp_path / "peeks.sql"
    query.write_text(
        "SELECT p.player_id AS entity_id, t AS as_of_date, date_diff('day', p.install_date, t) AS tenure_days,\n"
        "       CASE WHEN t + $label_horizon_days <= $as_of_date THEN p.player_id % 2 END AS label\n"
        "FROM players AS p, (SELECT CAST(unnest(list_append($snapshot_dates, CAST($as_of_date AS DATE) - 3)) AS DATE) AS t) AS s\n"
        "WHERE p.install_date <= t\n")
    frames, report, lines = cached_build(warehouse, tmp_path / "outputs", D, "run", query_path=query)
    assert "not asked for" in report.bypassed
    assert hashes(frames) == cold_reference(warehouse, D, query)
    assert frames.stats["rows_off_plan"] > 0


def test_a_query_with_a_type_the_cache_cannot_store_says_what_to_cast(warehouse, tmp_path):
    query = tmp_path / "boolean.sql"
    query.write_text(
        "SELECT p.player_id AS entity_id, t AS as_of_date, p.platform = 'ios' AS on_ios,\n"
        "       CASE WHEN t + $label_horizon_days <= $as_of_date THEN p.player_id % 2 END AS label\n"
        "FROM players AS p, (SELECT CAST(unnest($snapshot_dates) AS DATE) AS t) AS s WHERE p.install_date <= t\n")
    frames, report, _ = cached_build(warehouse, tmp_path / "outputs", D, "run", query_path=query)
    assert "on_ios BOOLEAN" in report.bypassed and "CAST" in report.bypassed
    assert hashes(frames) == cold_reference(warehouse, D, query)


def test_each_table_is_dated_by_its_one_date_column_unless_told(warehouse):
    con = duckdb.connect(str(warehouse))
    con.execute("CREATE TABLE refunds (player_id BIGINT, asked DATE, paid DATE)")
    con.execute("CREATE TABLE regions (country VARCHAR, region VARCHAR)")
    con.close()
    with features.open_source(warehouse) as con:
        assert sc.date_columns_of(con) == {"players": "install_date", "purchases": "purchase_date",
                                           "refunds": None, "regions": None, "sessions": "session_date"}
        assert sc.date_columns_of(con, "refunds=paid, players=")["refunds"] == "paid"
        assert sc.date_columns_of(con, {"players": ""})["players"] is None
        with pytest.raises(sc.SnapshotCacheError, match=r"table\(s\) \['orders'\] that the warehouse does not have"):
            sc.date_columns_of(con, "orders=order_date")
        with pytest.raises(sc.SnapshotCacheError, match="dated by column 'when'"):
            sc.date_columns_of(con, "refunds=when")
    with pytest.raises(sc.SnapshotCacheError, match="is not table=column"):
        sc.parse_date_columns("refunds")
    assert not features.is_transient(sc.SnapshotCacheError("x"))


def test_the_fingerprint_of_a_day_moves_only_with_rows_dated_up_to_it(warehouse):
    with features.open_source(warehouse) as con:
        tables = sc.date_columns_of(con)
        before = sc.raw_fingerprint(con, tables)
    late = D - 5 * WEEK
    _add_session(warehouse, late)
    with features.open_source(warehouse) as con:
        after = sc.raw_fingerprint(con, tables)
    assert after.rows == before.rows + 1
    for day in (late - dt.timedelta(days=1), late - 10 * WEEK):
        assert after.through(day) == before.through(day)
    for day in (late, late + WEEK, D):
        assert after.through(day) != before.through(day)


def test_refresh_assets_cache_lists_and_drops_the_cache(warehouse, tmp_path, monkeypatch, capsys):
    from refresh_assets import cli

    store = tmp_path / "outputs"
    monkeypatch.setenv("REFRESH_ASSETS_OUTPUTS", str(store))
    assert cli.main(["cache"]) == 0
    assert "no snapshot cache at" in capsys.readouterr().out
    cached_build(warehouse, store, D, "first")
    assert cli.main(["cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    plan = features.snapshot_plan(features.DatasetSpec(as_of_date=D))
    assert out[0].startswith(f"snapshot cache at {store / sc.CACHE_ASSET}: {len(plan.all_dates()) + 1} snapshot(s)")
    assert any(line.strip().startswith(f"{D}  ") and "label open" in line for line in out), out
    assert cli.main(["cache", "drop"]) == 0
    assert "dropped the snapshot cache" in capsys.readouterr().out
    assert not (store / sc.CACHE_ASSET).exists()
    frames, report, _ = cached_build(warehouse, store, D, "second")
    assert report.reused == [] and hashes(frames) == cold_reference(warehouse, D)


def test_the_cache_works_the_same_on_an_object_store(warehouse, tmp_path):
    """Entries on fsspec's memory:// filesystem (what s3:// or gs:// outputs use): reused, and equal."""
    import uuid

    from upath import UPath

    from refresh_assets.core.object_store import open_output_store

    root = UPath(f"memory://cache-{uuid.uuid4().hex[:8]}/outputs")
    try:
        store = open_output_store(str(root))
        with features.open_source(warehouse) as con:
            spec = features.DatasetSpec(as_of_date=D)
            sc.build_dataset(con, spec, sc.SnapshotCache(store, "first"))
            frames, report = sc.build_dataset(con, spec, sc.SnapshotCache(store, "second"))
        assert report.computed == [] and len(report.reused) == 12
        assert hashes(frames) == cold_reference(warehouse, D)
        assert sc.describe(str(root))[0].startswith(f"snapshot cache at {root / sc.CACHE_ASSET}: 13 snapshot(s)")
        assert "dropped" in sc.drop(str(root)) and not (root / sc.CACHE_ASSET).exists()
    finally:
        if root.exists():
            root.fs.rm(root.path, recursive=True)
