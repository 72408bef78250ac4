"""The SQL features, labels and the out-of-time plan, on tiny tables with answers worked out by hand."""

import datetime as dt

import duckdb
import pandas as pd
import pytest

from refresh_assets.core.features import (
    DatasetContractError,
    DatasetSpec,
    build_dataset,
    check_contract,
    load_query,
    open_source,
    run_query,
    snapshot_plan,
)

D = dt.date


@pytest.fixture
def con():
    """Three players. p1 plays steadily and pays; p2 stops after Jan 10; p3 installs on Jan 15."""
    c = duckdb.connect()
    c.execute("CREATE TABLE players (player_id BIGINT, install_date DATE, platform VARCHAR, country VARCHAR, channel VARCHAR)")
    c.executemany("INSERT INTO players VALUES (?, ?, ?, ?, ?)", [
        (1, D(2026, 1, 1), "ios", "US", "organic"),
        (2, D(2026, 1, 1), "android", "DE", "paid_social"),
        (3, D(2026, 1, 15), "ios", "GB", "search"),
    ])
    c.execute("CREATE TABLE sessions (player_id BIGINT, session_date DATE, sessions INTEGER, minutes DOUBLE, level INTEGER)")
    c.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", [
        (1, D(2026, 1, 2), 1, 10.0, 1),
        (1, D(2026, 1, 9), 2, 20.0, 2),
        (1, D(2026, 1, 14), 3, 30.0, 4),
        (1, D(2026, 1, 20), 1, 15.0, 5),
        (1, D(2026, 2, 10), 1, 5.0, 6),   # after D: must never be read
        (2, D(2026, 1, 3), 1, 40.0, 3),
        (2, D(2026, 1, 10), 1, 20.0, 4),
        (3, D(2026, 1, 15), 2, 25.0, 1),
    ])
    c.execute("CREATE TABLE purchases (player_id BIGINT, purchase_date DATE, amount DOUBLE)")
    c.executemany("INSERT INTO purchases VALUES (?, ?, ?)", [
        (1, D(2025, 12, 31), 1.0),  # before install in a messy source: still counted in spend_total
        (1, D(2026, 1, 9), 4.99),
        (1, D(2026, 1, 20), 9.99),   # after snapshot Jan 14: not in its features
    ])
    yield c
    c.close()


def rows(con, snapshots, as_of=D(2026, 2, 1), horizon=14):
    sql, _ = load_query()
    frame = run_query(con, sql, as_of, snapshots, horizon)
    return {(int(r.entity_id), r.as_of_date.date()): r for r in frame.itertuples()}


def test_features_at_a_snapshot_worked_by_hand(con):
    got = rows(con, [D(2026, 1, 14)])
    assert set(got) == {(1, D(2026, 1, 14)), (2, D(2026, 1, 14))}  # p3 not installed yet
    p1 = got[(1, D(2026, 1, 14))]
    # window (Dec 17, Jan 14]: sessions on Jan 2, 9, 14; last 7 days (Jan 7, Jan 14]: Jan 9 and Jan 14
    assert (p1.sessions_28d, p1.sessions_7d) == (6, 5)
    assert (p1.minutes_28d, p1.minutes_7d) == (60.0, 50.0)
    assert (p1.active_days_28d, p1.active_days_7d) == (3, 2)
    assert p1.minutes_trend == pytest.approx(50.0 * 4 / 61.0)
    assert (p1.level, p1.level_gain_28d) == (4, 3)
    assert p1.tenure_days == 13 and p1.days_since_last_session == 0
    assert (p1.purchases_28d, p1.spend_28d) == (2, pytest.approx(5.99))
    assert p1.spend_total == pytest.approx(5.99) and p1.days_since_last_purchase == 5
    p2 = got[(2, D(2026, 1, 14))]
    assert p2.days_since_last_session == 4 and p2.spend_total == 0.0
    assert pd.isna(p2.days_since_last_purchase)


def test_labels_horizon_and_no_peeking_after_d(con):
    got = rows(con, [D(2026, 1, 14), D(2026, 1, 20)], as_of=D(2026, 2, 1))
    # p1 plays on Jan 20, inside (Jan 14, Jan 28] -> stays (0). p2 never plays again -> churn (1).
    assert got[(1, D(2026, 1, 14))].label == 0
    assert got[(2, D(2026, 1, 14))].label == 1
    # Jan 20 + 14 = Feb 3 > D = Feb 1: label not complete -> NULL (even though p1 plays on Feb 10)
    assert pd.isna(got[(1, D(2026, 1, 20))].label)
    # With D = Feb 15 the Feb 10 session is after the horizon (Jan 20, Feb 3]: p1 churns at Jan 20
    later = rows(con, [D(2026, 1, 20)], as_of=D(2026, 2, 15))
    assert later[(1, D(2026, 1, 20))].label == 1
    assert later[(3, D(2026, 1, 20))].label == 1


def test_parameters_are_bound_not_formatted(con):
    sql, _ = load_query()
    with pytest.raises(DatasetContractError, match="could not convert a value.*invalid date field format"):
        run_query(con, sql, "2026-02-01'; DROP TABLE players; --", [D(2026, 1, 14)], 14)
    assert con.execute("SELECT count(*) FROM players").fetchone()[0] == 3


def test_snapshot_plan_is_out_of_time():
    plan = snapshot_plan(DatasetSpec(as_of_date=D(2026, 6, 1), lookback_days=91))
    # grid every 7 days back from Jun 1; last complete label: May 18 (May 18 + 14 = Jun 1)
    assert plan.holdout_dates == (D(2026, 5, 11), D(2026, 5, 18))
    # training ends a horizon before the holdout starts: <= Apr 27
    assert plan.train_dates[-1] == D(2026, 4, 27)
    assert plan.train_dates[0] == D(2026, 3, 2)  # Jun 1 - 91 days, on the grid
    assert len(plan.train_dates) == 9
    assert plan.scoring_date == D(2026, 6, 1)
    assert max(plan.train_dates) + dt.timedelta(days=14) <= min(plan.holdout_dates)


@pytest.mark.parametrize("kwargs, field", [
    ({"data_start_date": D(2026, 6, 2)}, "data_start_date"),
    ({"label_horizon_days": 0}, "label_horizon_days"),
    ({"lookback_days": 20}, "lookback_days"),
])
def test_bad_windows_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(DatasetContractError, match=field):
        snapshot_plan(DatasetSpec(as_of_date=D(2026, 6, 1), **kwargs))


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"entity_id": [1], "as_of_date": ["2026-01-01"], "x": [1]}), "missing required column"),
    (pd.DataFrame({"entity_id": [1], "as_of_date": ["2026-01-01"], "label": [1]}), "no feature columns"),
    (pd.DataFrame({"entity_id": [1], "as_of_date": ["2026-01-01"], "x": [[1, 2]], "label": [1]}),
     "feature 'x' holds list values"),
    (pd.DataFrame({"entity_id": [1], "as_of_date": ["someday"], "x": [1], "label": [1]}), "'as_of_date' is not a date"),
])
def test_contract_violations_are_named(frame, message):
    with pytest.raises(DatasetContractError, match=message):
        check_contract(frame)


def test_build_dataset_splits_and_parquet_source(tmp_path, con):
    for table in ("players", "sessions", "purchases"):
        con.execute(f"COPY {table} TO '{tmp_path / (table + '.parquet')}' (FORMAT parquet)")
    spec = DatasetSpec(as_of_date=D(2026, 2, 8), data_start_date=D(2026, 1, 1), snapshot_every_days=1,
                       label_horizon_days=7, holdout_days=3)
    with open_source(tmp_path) as source:
        frames = build_dataset(source, spec)
    # labelled grid ends Feb 1; holdout Jan 30..Feb 1; training <= Jan 23
    assert frames.plan.holdout_dates == (D(2026, 1, 30), D(2026, 1, 31), D(2026, 2, 1))
    assert frames.plan.train_dates[-1] == D(2026, 1, 23)
    assert "label" not in frames.scoring.columns
    assert frames.stats["train"]["rows"] == len(frames.train) > 0
    assert set(frames.train["label"].unique()) <= {0, 1}
    with pytest.raises(DatasetContractError, match="does not exist"):
        with open_source(tmp_path / "nope.duckdb"):
            pass


def test_transient_errors_are_told_apart_from_sql_errors(tmp_path):
    import subprocess
    import sys

    from refresh_assets.core.features import is_transient

    con = duckdb.connect()
    with pytest.raises(duckdb.Error) as parse_error:
        con.execute("SELEC 1")
    with pytest.raises(duckdb.Error) as catalog_error:
        con.execute("SELECT * FROM no_such_table")
    assert not is_transient(parse_error.value) and not is_transient(catalog_error.value)
    assert not is_transient(DatasetContractError("duplicate rows"))
    # a file locked by another process is transient
    path = tmp_path / "locked.duckdb"
    holder = duckdb.connect(str(path))
    holder.execute("CREATE TABLE t (x INTEGER)")
    probe = ("import duckdb, sys\nfrom refresh_assets.core.features import is_transient\n"
             f"try:\n    duckdb.connect({str(path)!r}, read_only=True)\nexcept Exception as e:\n"
             "    print(is_transient(e))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    holder.close()
    assert out.strip() == "True"


@pytest.mark.parametrize("where", ["", "WHERE false"])
def test_fetch_frame_equals_duckdb_df(where):
    """The Arrow fetch gives the frame ``.df()`` gives: dtypes (NULL or not) and values, text, dates, sums."""
    from refresh_assets.core.features import fetch_frame

    c = duckdb.connect()
    sql = f"""
        SELECT i::BIGINT AS big, i::INTEGER AS int, i::SMALLINT AS small, (i % 100)::TINYINT AS tiny,
               CASE WHEN i % 3 = 0 THEN NULL ELSE i END::BIGINT AS big_null,
               CASE WHEN i % 3 = 0 THEN NULL ELSE i END::INTEGER AS int_null,
               CASE WHEN i % 3 = 0 THEN NULL ELSE i END::SMALLINT AS small_null,
               CASE WHEN i % 3 = 0 THEN NULL ELSE i % 100 END::TINYINT AS tiny_null,
               i / 7 AS dbl, CASE WHEN i % 4 = 0 THEN NULL ELSE i / 3 END AS dbl_null, (i / 3)::FLOAT AS flt,
               DATE '2026-01-01' + i::INTEGER AS day,
               CASE WHEN i % 5 = 0 THEN NULL ELSE DATE '1970-01-01' - i::INTEGER END AS day_null,
               sum(i::INTEGER) OVER (ORDER BY i) AS hugeint_sum,
               CASE WHEN i % 2 = 0 THEN NULL ELSE sum(i::INTEGER) OVER (ORDER BY i) END AS hugeint_null,
               ['ios', 'android', 'web'][i % 3 + 1] AS text,
               CASE WHEN i % 6 = 0 THEN NULL ELSE 'c' || (i % 4) END AS text_null,
               'é ' || i AS text_unique
        FROM range(5000) AS r(i) {where}
        ORDER BY i
    """
    expected = c.execute(sql).df()
    got = fetch_frame(c, sql, {})
    assert list(got.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    if not where:
        assert got["text_null"].isna().sum() > 0 and got["int_null"].dtype == "Int32"
    # a type it does not convert itself (BOOLEAN, a list) and duplicate names go through .df()
    for other in ("SELECT i % 2 = 0 AS flag, [i] AS xs FROM range(10) AS r(i)", "SELECT 1 AS a, 2 AS a"):
        pd.testing.assert_frame_equal(fetch_frame(c, other, {}), c.execute(other).df())


def test_purchases_before_every_window_still_count_towards_spend_total(con):
    """Purchases older than every 28-day window are summed per player apart; spend_total and the last purchase
    date must come out as if they were in the window join."""
    con.executemany("INSERT INTO purchases VALUES (?, ?, ?)", [
        (2, D(2025, 10, 1), 2.5),    # both long before the first window (Dec 17, Jan 14]
        (2, D(2025, 11, 20), 7.25),
        (1, D(2025, 9, 1), 100.0),
    ])
    got = rows(con, [D(2026, 1, 14), D(2026, 1, 20)])
    p2 = got[(2, D(2026, 1, 14))]
    assert (p2.purchases_28d, p2.spend_28d) == (0, 0.0)
    assert p2.spend_total == pytest.approx(9.75)
    assert p2.days_since_last_purchase == (D(2026, 1, 14) - D(2025, 11, 20)).days
    p1 = got[(1, D(2026, 1, 20))]
    # in the window (Dec 23, Jan 20]: Dec 31, Jan 9, Jan 20; before every window: Sep 1
    assert (p1.purchases_28d, p1.spend_28d) == (3, pytest.approx(15.98))
    assert p1.spend_total == pytest.approx(115.98) and p1.days_since_last_purchase == 0


def test_rows_come_sorted_whatever_order_the_query_leaves(con):
    """A query's own row order does not reach the dataset: rows are by (as_of_date, entity_id), so the same data
    gives the same file. Covers the numeric fast path, text keys and NULL keys (last)."""
    snapshots = [D(2026, 1, 14), D(2026, 1, 20)]
    sql, _ = load_query()
    expected = run_query(con, sql, D(2026, 2, 1), snapshots, 14)
    assert list(zip(expected["as_of_date"], expected["entity_id"])) == sorted(
        zip(expected["as_of_date"], expected["entity_id"]))
    reversed_sql = f"SELECT * FROM ({sql}) AS q ORDER BY as_of_date DESC, entity_id DESC"
    got = run_query(con, reversed_sql, D(2026, 2, 1), snapshots, 14)
    pd.testing.assert_frame_equal(got, expected)
    text_keys = ("SELECT * FROM (VALUES ('b', DATE '2026-01-02', 1.0, 0), ('a', DATE '2026-01-02', 2.0, 1), "
                 "(NULL, DATE '2026-01-01', 3.0, 0), ('c', DATE '2026-01-01', 4.0, 1), ('a', NULL, 5.0, 0)) "
                 "AS t(entity_id, as_of_date, x, label) WHERE $as_of_date IS NOT NULL "
                 "AND len($snapshot_dates) > 0 AND $label_horizon_days > 0")
    # x DOUBLE: the Arrow path (text keys sorted by Arrow); x DECIMAL and a BOOLEAN: the .df() path (pandas' sort)
    for x_type in ("DOUBLE", "DECIMAL(4, 1)"):
        for extra in ("", ", x > 2 AS flag"):
            typed = f"SELECT * REPLACE (CAST(x AS {x_type}) AS x){extra} FROM ({text_keys})"
            frame = run_query(con, typed, D(2026, 2, 1), snapshots, 14)
            # Jan 1: 'c' then NULL; Jan 2: 'a', 'b'; the NULL date last
            assert frame["x"].astype(float).tolist() == [4.0, 3.0, 2.0, 1.0, 5.0], (x_type, extra)


def test_split_gives_the_same_frames_from_sorted_or_shuffled_rows(con):
    """The split takes contiguous runs of sorted rows as views; rows in any other order take the masked copy.
    Both must give equal frames, indexed 0..n-1."""
    from refresh_assets.core.features import split_dataset

    spec = DatasetSpec(as_of_date=D(2026, 2, 1), data_start_date=D(2026, 1, 1), snapshot_every_days=1,
                       label_horizon_days=3, holdout_days=2)
    plan = snapshot_plan(spec)
    sql, _ = load_query()
    rows_sorted = run_query(con, sql, spec.as_of_date, plan.all_dates(), spec.label_horizon_days)
    shuffled = rows_sorted.sample(frac=1.0, random_state=3).reset_index(drop=True)
    fast = split_dataset(rows_sorted, spec, plan, "sha")
    slow = split_dataset(shuffled, spec, plan, "sha")
    for name in ("train", "holdout", "scoring"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert len(a) > 0 and list(a.index) == list(range(len(a)))
        b = b.sort_values(["as_of_date", "entity_id"], ignore_index=True)
        pd.testing.assert_frame_equal(a, b)
    assert fast.stats == slow.stats
    # the frames of the fast path share the query result's buffers, never each other's rows
    holdout_before, scoring_before = fast.holdout.copy(), fast.scoring.copy()
    fast.train.loc[:, "sessions_28d"] = -1.0
    pd.testing.assert_frame_equal(fast.holdout, holdout_before)
    pd.testing.assert_frame_equal(fast.scoring, scoring_before)


@pytest.mark.parametrize("horizon", [7, 14, 28, 35])
def test_labels_equal_a_brute_force_count_whichever_way_the_query_takes(horizon):
    """The query reads a label off the window of t + horizon when that is a snapshot (and the horizon fits in
    28 days), and scans the horizon otherwise: both must agree with counting sessions in (t, t + horizon]."""
    import numpy as np

    rng = np.random.default_rng(horizon)
    c = duckdb.connect()
    c.execute("CREATE TABLE players AS SELECT i::BIGINT AS player_id, DATE '2025-10-01' AS install_date, "
              "'ios' AS platform, 'US' AS country, 'organic' AS channel FROM range(1, 41) AS r(i)")
    days = [(int(p), D(2025, 10, 1) + dt.timedelta(days=int(d)))
            for p in range(1, 41) for d in sorted(rng.choice(150, size=int(rng.integers(1, 25)), replace=False))]
    c.execute("CREATE TABLE sessions (player_id BIGINT, session_date DATE, sessions INTEGER, minutes DOUBLE, level INTEGER)")
    c.executemany("INSERT INTO sessions VALUES (?, ?, 1, 1.0, 1)", days)
    c.execute("CREATE TABLE purchases (player_id BIGINT, purchase_date DATE, amount DOUBLE)")
    as_of = D(2026, 2, 20)
    # a weekly grid with a gap (some t + horizon are snapshots, some are not) and an odd date
    snapshots = [D(2025, 12, 1) + dt.timedelta(days=7 * k) for k in (0, 1, 2, 3, 5, 6, 8)] + [D(2026, 1, 17)]
    got = rows(c, snapshots, as_of=as_of, horizon=horizon)
    assert len(got) > 100
    seen = {}
    for player, day in days:
        seen.setdefault(player, []).append(day)
    covered = 0
    for (player, t), row in got.items():
        if t + dt.timedelta(days=horizon) > as_of:
            assert pd.isna(row.label)
            continue
        covered += (t + dt.timedelta(days=horizon)) in snapshots and horizon <= 28
        plays = any(t < d <= t + dt.timedelta(days=horizon) for d in seen[player])
        assert row.label == (0 if plays else 1), (player, t)
    assert horizon > 28 or covered > 0  # the window path was taken for some rows


def test_same_data_gives_the_same_rows_bit_for_bit():
    """DuckDB adds partial sums from its threads in whatever order they finish; summed as DOUBLE, a feature could
    differ in its last bits from one run to the next (and with it the dataset's hash and Dagster data version).
    Minutes and amounts are summed in whole millionths, exactly, so repeated runs on the same data agree to the bit."""
    import numpy as np


    c = duckdb.connect()
    c.execute("SET threads = 4")  # more threads than rows groups need: the order of the partial sums varies
    rng = np.random.default_rng(7)
    n = 400_000
    c.execute("CREATE TABLE players AS SELECT i::BIGINT AS player_id, DATE '2025-01-01' AS install_date, "
              "'ios' AS platform, 'US' AS country, 'organic' AS channel FROM range(1, 3001) AS r(i)")
    frame = pd.DataFrame({
        "player_id": rng.integers(1, 3001, n).astype("int64"),
        "session_date": pd.to_datetime("2026-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D"),
        "sessions": rng.integers(1, 4, n).astype("int32"),
        "minutes": rng.gamma(2.0, 10.0, n),  # full-precision doubles: the hardest case for a stable sum
        "level": rng.integers(1, 50, n).astype("int32"),
    })
    c.execute("CREATE TABLE sessions AS SELECT player_id, CAST(session_date AS DATE) AS session_date, sessions, "
              "round(minutes, 4) AS minutes, level FROM frame")
    c.execute("CREATE TABLE purchases AS SELECT player_id, session_date AS purchase_date, round(minutes / 7, 2) AS amount "
              "FROM sessions WHERE level % 5 = 0")
    snapshots = [D(2026, 1, 29) + dt.timedelta(days=7 * k) for k in range(4)]
    sql, _ = load_query()
    first = run_query(c, sql, D(2026, 3, 1), snapshots, 7)
    assert len(first) > 5000
    for _ in range(4):
        pd.testing.assert_frame_equal(run_query(c, sql, D(2026, 3, 1), snapshots, 7), first, check_exact=True)


def test_a_value_the_query_cannot_convert_is_refused_by_name(con):
    con.execute("INSERT INTO players VALUES (9, DATE '2026-01-01', 'ios', 'twelve', 'organic')")
    sql = ("SELECT player_id AS entity_id, $as_of_date AS as_of_date, CAST(country AS INTEGER) AS x, 0 AS label "
           "FROM players WHERE len($snapshot_dates) > 0 AND $label_horizon_days > 0")
    with pytest.raises(DatasetContractError, match="could not convert a value.*'US'.*NaN, infinite or out-of-range"):
        run_query(con, sql, D(2026, 2, 1), [D(2026, 1, 14)], 14)


def test_a_query_that_cannot_bind_reports_its_own_error_not_the_parameter_count(con):
    """A relation that fails to bind first complains "expected 0 parameters, got 3"; the step must name the cause."""
    with pytest.raises(duckdb.CatalogException, match="player_events"):
        run_query(con, "SELECT * FROM player_events", D(2026, 2, 1), [D(2026, 1, 14)], 14)


def test_the_daily_population_equals_the_scoring_frame_of_a_refresh_of_the_same_day():
    """``scoring_population`` runs the query for the one snapshot D; a refresh of D runs it for every snapshot of
    its plan. Both must store the same rows, dtypes and hash, so both paths score the same people (on a small
    simulated game with purchases, NULLs in days_since_last_purchase, and players coming and going)."""
    from refresh_assets.core.artifacts import frame_hash
    from refresh_assets.core.features import build_scoring_population
    from refresh_assets.core.simulate import SimulationConfig, simulate

    tables = simulate(SimulationConfig(n_players=600, days=120, start_date=D(2026, 1, 5), seed=3,
                                              warmup_days=60))
    c = duckdb.connect()
    for name, frame in tables.items():
        c.register(f"{name}_frame", frame)
        c.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
    for day in (D(2026, 4, 12), D(2026, 5, 3)):
        refresh = build_dataset(c, DatasetSpec(as_of_date=day))
        population = build_scoring_population(c, day, 14)
        assert len(population.scoring) > 100
        pd.testing.assert_frame_equal(population.scoring, refresh.scoring, check_exact=True)
        assert frame_hash(population.scoring) == frame_hash(refresh.scoring)
        assert population.stats["scoring"] == refresh.stats["scoring"]
        assert "label" not in population.scoring.columns


def test_an_integer_feature_null_only_in_older_snapshots_is_stored_alike_by_both_paths(con):
    """A query result holds an integer column with a NULL anywhere as pandas' nullable Int32: a refresh's
    multi-snapshot result would then store D's scoring rows as Int32 and the one-snapshot population as int32.
    Both store them by D's rows alone."""
    from refresh_assets.core.artifacts import frame_hash
    from refresh_assets.core.features import build_scoring_population

    sql, _ = load_query()
    # a feature NULL for snapshots before Jan 20 only
    query = f"SELECT *, CASE WHEN as_of_date < DATE '2026-01-20' THEN NULL ELSE 7 END AS weekly FROM ({sql})"
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "q.sql"
        script.write_text(query)
        day = D(2026, 2, 1)
        spec = DatasetSpec(as_of_date=day, data_start_date=D(2026, 1, 3), label_horizon_days=7, holdout_days=7)
        refresh = build_dataset(con, spec, script)
        population = build_scoring_population(con, day, 7, script)
    assert str(refresh.train["weekly"].dtype) == "Int32"  # NULLs in the older snapshots
    assert str(population.scoring["weekly"].dtype) == str(refresh.scoring["weekly"].dtype) == "int32"
    assert frame_hash(population.scoring) == frame_hash(refresh.scoring)


def test_a_parquet_folder_exposes_every_file_and_every_folder_of_files_as_a_table_of_that_name(tmp_path):
    """A user's own table names: customers.parquet is table customers, orders/ (one file per year, at any
    depth) is table orders; a name that is both a file and a folder is refused, naming both."""
    import pandas as pd

    from refresh_assets.core.features import DatasetContractError, open_source

    pd.DataFrame({"customer_id": [1, 2, 3]}).to_parquet(tmp_path / "customers.parquet")
    for year in (2019, 2020):
        (tmp_path / "orders" / f"year={year}").mkdir(parents=True)
        pd.DataFrame({"customer_id": [1, 2], "amount": [10.0, 20.0]}).to_parquet(
            tmp_path / "orders" / f"year={year}" / "part-0.parquet")
    (tmp_path / "notes").mkdir()  # a folder without Parquet files is no table
    (tmp_path / "notes" / "readme.txt").write_text("not a table")
    with open_source(tmp_path) as con:
        tables = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert tables == {"customers", "orders"}
        assert con.execute("SELECT count(*), sum(amount) FROM orders").fetchone() == (4, 60.0)
        assert con.execute("SELECT count(*) FROM customers").fetchone() == (3,)
    pd.DataFrame({"customer_id": [9]}).to_parquet(tmp_path / "orders.parquet")
    with pytest.raises(DatasetContractError, match=r"table 'orders' is both a file orders.parquet and a folder orders/"):
        with open_source(tmp_path):
            pass
    with pytest.raises(DatasetContractError, match="no Parquet table under"):
        with open_source(tmp_path / "notes"):
            pass
