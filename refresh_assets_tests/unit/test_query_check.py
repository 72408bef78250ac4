"""`refresh-assets check-query`: every contract violation the README lists fails the check, naming the rule and what
to change; a good query passes and shows its rows per snapshot date and its features. Tiny hand-made DuckDB
tables; nothing is trained and no Dagster run is made."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from refresh_assets.core import features
from refresh_assets.core.features import DatasetSpec
from refresh_assets.core.query_check import check_query, render
from refresh_assets.core.validation import DatasetLimits, DatasetUnderTest, validate

D = dt.date(2026, 6, 1)
#: snapshots every 7 days back from D for 91 days: train D-91..D-35 (9 dates), holdout D-21, D-14, scoring D
SPEC = DatasetSpec(D)
LIMITS = DatasetLimits()  # the thresholds a refresh uses by default
ENTITIES = 60

#: one row per (entity, snapshot date) for the 14 weekly dates up to D; label 1 for a third of them
FACTS = f"""
CREATE TABLE facts AS
SELECT e AS entity_id, CAST(DATE '{D}' - CAST(7 * k AS INTEGER) AS DATE) AS as_of_date,
       round(((e * 37 + k * 11) % 100) / 3.0, 2) AS spend,
       CASE WHEN e % 2 = 0 THEN 'ios' ELSE 'android' END AS platform,
       CAST((e + k) % 3 = 0 AS INTEGER) AS label
FROM range({ENTITIES}) AS r(e), range(0, 14) AS s(k)
"""
#: a good user query over it: the contract's parameters in, entity_id, as_of_date, features, label out
GOOD = """SELECT entity_id, as_of_date, spend, platform,
       CASE WHEN as_of_date + $label_horizon_days > $as_of_date THEN NULL ELSE label END AS label
FROM facts WHERE list_contains($snapshot_dates, as_of_date)"""


def wrap(select: str, where: str = "") -> str:
    """A query over the good one: ``SELECT <select> FROM good [<where>]``."""
    return f"SELECT {select} FROM ({GOOD}) AS good {where}"


@pytest.fixture
def warehouse(tmp_path) -> Path:
    path = tmp_path / "raw.duckdb"
    con = duckdb.connect(str(path))
    con.execute(FACTS)
    con.close()
    return path


def run(warehouse: Path, tmp_path: Path, sql: str | None, limits: DatasetLimits = LIMITS, slice_columns=None,
        query_name: str = "query.sql"):
    query = tmp_path / query_name
    if sql is not None:
        query.write_text(sql)
    with features.open_source(warehouse) as con:
        return check_query(con, SPEC, query, limits, slice_columns, source=str(warehouse))


# (case, SQL, the rules that must fail (exactly), rule -> words of its message, rule -> words of its fix)
VIOLATIONS = [
    ("missing_required_column", wrap("entity_id, as_of_date, spend, platform, label AS churned"), {"contract"},
     {"contract": "missing required column(s) ['label']"}, {"contract": "churned AS label"}),
    ("no_feature_column", wrap("entity_id, as_of_date, label"), {"contract"},
     {"contract": "no feature columns"}, {"contract": "at least one feature column"}),
    ("labels_other_than_0_1", wrap("* REPLACE (CASE WHEN label = 1 AND entity_id % 5 = 0 THEN 2 ELSE label END AS label)"),
     {"label_values"}, {"label_values": "value(s) other than 0/1, e.g. ['2']"},
     {"label_values": "label must be 1 (churned) or 0 (stayed)"}),
    ("null_labels_on_complete_snapshots",
     wrap("* REPLACE (CASE WHEN entity_id % 7 = 0 THEN NULL ELSE label END AS label)"), {"label_values"},
     {"label_values": "train label has 81 NULL value(s)"},
     {"label_values": "CASE WHEN as_of_date + $label_horizon_days > $as_of_date THEN NULL"}),
    ("duplicate_keys", wrap("*") + " UNION ALL " + wrap("*", "WHERE entity_id % 10 = 0"), {"unique_keys"},
     {"unique_keys": "rows sharing an (entity_id, as_of_date), e.g. entity_id 0"},
     {"unique_keys": "one row per (entity_id, as_of_date): GROUP BY entity_id, as_of_date"}),
    ("empty_sets", wrap("*", "WHERE false"), {"row_counts", "label_rate", "holdout_size", "constant_features"},
     {"row_counts": "train has 0 rows, fewer than the minimum 200; holdout has 0 rows"},
     {"row_counts": "population filter"}),
    ("empty_holdout", wrap("*", "WHERE as_of_date NOT BETWEEN $as_of_date - 21 AND $as_of_date - 14"),
     {"row_counts", "label_rate", "holdout_size"},
     {"row_counts": "holdout has 0 rows, fewer than the minimum 100"}, {"row_counts": "lower min_train_rows"}),
    ("rows_dated_after_d", wrap("*") + " UNION ALL " +
     wrap("* REPLACE (as_of_date + 7 AS as_of_date)", "WHERE as_of_date = $as_of_date"), {"no_future_dates"},
     {"no_future_dates": f"the query returned {ENTITIES} row(s) with as_of_date after the refresh date {D}"},
     {"no_future_dates": "return rows only for the dates in $snapshot_dates"}),
    ("all_null_feature", wrap("* REPLACE (NULL::DOUBLE AS spend)"), {"null_rates", "constant_features"},
     {"null_rates": "feature 'spend' is NULL in 100.0% of training rows",
      "constant_features": "'spend' (0 distinct values)"},
     {"null_rates": "COALESCE(col, 0)", "constant_features": "carries no signal"}),
    ("constant_feature", wrap("* REPLACE (3 AS spend)"), {"constant_features"},
     {"constant_features": "'spend' (1 distinct value)"}, {"constant_features": "carries no signal"}),
    ("type_changes_between_frames",
     wrap("* REPLACE (CASE WHEN as_of_date = $as_of_date THEN CAST(platform AS UNION(n DOUBLE, t VARCHAR)) "
          "ELSE CAST(spend AS UNION(n DOUBLE, t VARCHAR)) END AS spend)"), {"schema"},
     {"schema": "feature 'spend' is float in train but text in scoring"},
     {"schema": "one type in every snapshot"}),
    ("date_typed_feature", wrap("*, as_of_date - 3 AS snapshot_copy"), {"schema"},
     {"schema": "feature 'snapshot_copy' has type"}, {"schema": "date_diff('day', col, $as_of_date)"}),
    ("nested_type_feature", wrap("* REPLACE ([spend] AS spend)"), {"contract"},
     {"contract": "feature 'spend' holds ndarray values (a nested SQL type)"}, {"contract": "pick an element"}),
    ("unconvertible_value", wrap("* REPLACE (CAST(platform AS INTEGER) AS platform)"), {"contract"},
     {"contract": "could not convert a value: Conversion Error: Could not convert string '"},
     {"contract": "TRY_CAST"}),
    ("unknown_table", GOOD.replace("FROM facts", "FROM player_events"), {"sql"},
     {"sql": "query.sql: Catalog Error: Table with name player_events does not exist!"},
     {"sql": "read the warehouse's tables (facts)"}),
    ("unknown_column", wrap("entity_id, as_of_date, spendd, label"), {"sql"},
     {"sql": 'Binder Error: Referenced column "spendd" not found'}, {"sql": "check the column names"}),
    ("sql_syntax_error", "SELEC entity_id FROM facts", {"sql"},
     {"sql": "query.sql: Parser Error: syntax error at or near \"SELEC\""}, {"sql": "fix the syntax"}),
    ("unused_parameter", "SELECT * FROM facts", {"sql"},
     {"sql": "Expected 0, got 3"}, {"sql": "all three: $as_of_date (DATE), $snapshot_dates (DATE[])"}),
    ("label_rate_zero", wrap("* REPLACE (CASE WHEN label IS NULL THEN NULL ELSE 0 END AS label)"),
     {"label_rate", "holdout_size"}, {"label_rate": "train has no positive label"},
     {"label_rate": "check the label's definition"}),
]


@pytest.mark.parametrize("case, sql, failing, messages, fixes", VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_each_contract_violation_fails_naming_the_rule_and_the_fix(warehouse, tmp_path, case, sql, failing,
                                                                      messages, fixes):
    check = run(warehouse, tmp_path, sql)
    assert not check.ok
    failed = {r.rule: r for r in check.rules if not r.passed}
    assert set(failed) == failing, {r: f.message for r, f in failed.items()}
    for rule, words in messages.items():
        assert words in failed[rule].message, failed[rule].message
    for rule, words in fixes.items():
        assert words in failed[rule].fix, failed[rule].fix
    text = render(check)
    for rule in failing:
        assert f"FAIL {rule}: " in text
    assert text.count("fix: ") == len(failing)
    assert f"FAILED: {len(failing)} rule(s)" in text


def test_a_query_file_not_found_fails_naming_the_file(warehouse, tmp_path):
    check = run(warehouse, tmp_path, None, query_name="no_such_query.sql")
    assert not check.ok
    [rule] = check.failed
    assert rule.rule == "query_file"
    assert f"query script not found: {tmp_path / 'no_such_query.sql'}" in rule.message
    assert "--query FILE.sql" in rule.fix and "FAIL query_file" in render(check)


def test_a_named_slice_column_the_query_lacks_fails(warehouse, tmp_path):
    check = run(warehouse, tmp_path, GOOD, slice_columns=["region"])
    assert [r.rule for r in check.failed] == ["slice_columns"]
    assert "['region']" in check.failed[0].message and "slice_columns" in check.failed[0].fix


def test_a_good_query_passes_and_shows_rows_and_label_rate_per_snapshot_date(warehouse, tmp_path):
    check = run(warehouse, tmp_path, GOOD)
    assert check.ok, [(r.rule, r.message) for r in check.failed]
    assert check.failed == [] and len(check.rules) >= 10
    # every planned date, in order, with its part of the split, its rows and its label rate from the facts table
    with duckdb.connect(str(warehouse), read_only=True) as con:
        expected = {str(day): (rows, rate) for day, rows, rate in con.execute(
            "SELECT as_of_date, count(*), avg(label) FROM facts GROUP BY 1").fetchall()}
    parts = [(s.as_of_date, s.part) for s in check.snapshots]
    assert parts == [(str(D - dt.timedelta(days=7 * k)), "train") for k in range(13, 4, -1)] + [
        (str(D - dt.timedelta(days=21)), "holdout"), (str(D - dt.timedelta(days=14)), "holdout"), (str(D), "scoring")]
    for s in check.snapshots:
        rows, rate = expected[s.as_of_date]
        assert s.rows == rows == ENTITIES
        if s.part == "scoring":
            assert s.label_rate is None and s.null_labels == ENTITIES
        else:
            assert s.label_rate == pytest.approx(rate) and s.null_labels == 0
    assert check.features == ["spend", "platform"]
    kinds = {c.name: (c.type, c.role, c.null_share) for c in check.columns}
    assert kinds == {"entity_id": ("number", "key", 0.0), "as_of_date": ("date", "key", 0.0),
                     "spend": ("number", "feature", 0.0), "platform": ("text", "feature", 0.0),
                     "label": ("number", "label", 0.0)}
    assert check.slice_columns == ["platform"]  # automatic: the text feature with 2 values
    assert {(s.value, s.rows, s.gated) for s in check.slices} == {("android", 60, False), ("ios", 60, False)}
    text = render(check)
    holdout = check.snapshots[-2]
    assert f"  {holdout.as_of_date}  holdout" in text and f"{holdout.label_rate:.4f}" in text
    assert "features (2): spend, platform" in text
    assert "platform: gated none; too small, reported only: android (60), ios (60)" in text
    assert "FAIL" not in text and text.splitlines()[-1].startswith(f"OK: all {len(check.rules)} rules pass")


def test_a_null_share_is_reported_per_column_in_train(warehouse, tmp_path):
    check = run(warehouse, tmp_path, wrap("* REPLACE (CASE WHEN entity_id % 4 = 0 THEN NULL ELSE spend END AS spend)"))
    assert check.ok
    assert {c.name: c.null_share for c in check.columns}["spend"] == pytest.approx(15 / 60)
    assert "25.0%  feature" in render(check)


# ---------------------------------------------------------------- what passes here passes a refresh


def refresh_verdicts(warehouse: Path, query: Path, tmp_path: Path) -> dict[str, bool]:
    """The refresh's own path: build_dataset, the frames through Parquet (as the dataset step stores them and the
    checks step reads them), then every blocking rule."""
    from refresh_assets.core.artifacts import atomic_write_parquet

    with features.open_source(warehouse) as con:
        frames = features.build_dataset(con, SPEC, query)
    stored = {}
    for name in ("train", "holdout", "scoring"):
        path = atomic_write_parquet(tmp_path / f"{name}.parquet", getattr(frames, name))
        stored[name] = pq.read_table(path).to_pandas()
    data = DatasetUnderTest(**stored, as_of_date=D, rows_after_as_of_date=frames.stats["rows_after_as_of_date"])
    return {r.rule: r.passed for r in validate(data, LIMITS)}


DATA_CASES = [(case, sql) for case, sql, failing, *_ in VIOLATIONS if not failing & {"contract", "sql"}]


@pytest.mark.parametrize("case, sql", [("good", GOOD), *DATA_CASES], ids=["good", *[c for c, _ in DATA_CASES]])
def test_the_check_gives_the_verdicts_of_a_refresh_on_the_stored_dataset(warehouse, tmp_path, case, sql):
    check = run(warehouse, tmp_path, sql)
    ours = {r.rule: r.passed for r in check.rules if r.rule != "contract"}
    assert ours == refresh_verdicts(warehouse, tmp_path / "query.sql", tmp_path)


# ---------------------------------------------------------------- the command


@pytest.fixture
def command(warehouse, tmp_path, monkeypatch):
    """``refresh-assets check-query --warehouse <tiny DuckDB file> [--query <user query file>]``.

    The flags export REFRESH_ASSETS_WAREHOUSE / REFRESH_ASSETS_QUERY; set through monkeypatch first, both are put
    back after the test."""
    from refresh_assets import cli

    monkeypatch.setenv("REFRESH_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REFRESH_ASSETS_WAREHOUSE", str(warehouse))
    monkeypatch.delenv("REFRESH_ASSETS_QUERY", raising=False)
    query = tmp_path / "user_query.sql"

    def with_query(sql: str | None, *args: str):
        flags = ["--warehouse", str(warehouse)]
        if sql is not None:
            query.write_text(sql)
            flags += ["--query", str(query)]
        return cli.main(["check-query", *flags, "--partition", str(D), *args])

    return with_query


def test_check_query_exits_0_on_a_good_query_and_prints_the_dates_and_features(command, capsys):
    assert command(GOOD) == 0
    out = capsys.readouterr().out
    assert f"check-query {D}: " in out and "user_query.sql" in out
    assert f"  {D - dt.timedelta(days=14)}  holdout" in out and f"  {D}  scoring" in out
    assert "features (2): spend, platform" in out and "OK: all" in out


def test_check_query_exits_1_on_duplicate_keys_naming_the_fix(command, capsys):
    assert command(wrap("*") + " UNION ALL " + wrap("*", "WHERE entity_id % 10 = 0")) == 1
    out = capsys.readouterr().out
    assert "FAIL unique_keys: train has 108 rows sharing an (entity_id, as_of_date)" in out
    assert "fix: one row per (entity_id, as_of_date): GROUP BY entity_id, as_of_date" in out
    assert "FAILED: 1 rule(s) (unique_keys)" in out


def test_check_query_exits_1_on_labels_other_than_0_1_as_json(command, capsys):
    assert command(wrap("* REPLACE (CASE WHEN label = 1 AND entity_id % 5 = 0 THEN 2 ELSE label END AS label)"),
                   "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [r["rule"] for r in report["rules"] if not r["passed"]] == ["label_values"]
    assert report["features"] == ["spend", "platform"] and len(report["snapshots"]) == 12


def test_check_query_exits_1_when_the_packaged_query_meets_an_unknown_table(command, capsys):
    """No query file: the packaged query, on a warehouse without its tables, names the query and the tables there."""
    assert command(None) == 1
    out = capsys.readouterr().out
    assert "FAIL sql: packaged:churn_features.sql: Catalog Error: Table with name" in out
    assert "does not exist" in out and "fix: read the warehouse's tables (facts)" in out


def test_check_query_exits_2_on_a_config_error_in_one_line(command, capsys):
    assert command(GOOD, "--set", "lookback_days=3") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid run input: training_dataset.lookback_days") and "\n" not in err


def test_check_query_exits_2_when_the_warehouse_does_not_exist(command, monkeypatch, tmp_path, capsys):
    """Without --warehouse, from REFRESH_ASSETS_WAREHOUSE: a missing warehouse is one line, exit 2."""
    from refresh_assets import cli

    monkeypatch.setenv("REFRESH_ASSETS_WAREHOUSE", str(tmp_path / "missing.duckdb"))
    assert cli.main(["check-query", "--partition", str(D)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot open the warehouse") and "missing.duckdb" in err and "\n" not in err


def test_check_query_reads_the_query_file_from_the_environment_and_fails_when_it_is_gone(
        command, monkeypatch, tmp_path, capsys):
    """REFRESH_ASSETS_QUERY (the resource's query_path) naming a file that is gone: the check fails, exit 1."""
    from refresh_assets import cli

    monkeypatch.setenv("REFRESH_ASSETS_QUERY", str(tmp_path / "gone.sql"))
    assert cli.main(["check-query", "--partition", str(D)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL query_file: query script not found: {tmp_path / 'gone.sql'}" in out and "fix: " in out


def test_check_query_settings_reach_the_plan_and_the_rules(command, capsys):
    """--set goes through the same Config classes as a refresh: the plan (lookback_days) and the limits."""
    assert command(GOOD, "--set", "lookback_days=56", "--set", "min_train_rows=1000") == 1
    out = capsys.readouterr().out
    assert "snapshot plan: 4 train date(s)" in out
    assert "FAIL row_counts: train has 240 rows, fewer than the minimum 1000" in out


def test_check_query_imports_neither_sklearn_nor_evidently(warehouse, tmp_path):
    """It must start fast: the CLI path loads no model or drift library."""
    code = (
        "import sys\n"
        "from refresh_assets import cli\n"
        f"code = cli.main(['--data-dir', {str(tmp_path / 'data')!r}, 'check-query', '--partition', '{D}'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'evidently', 'skops'))\n"
        "print('HEAVY', heavy, 'EXIT', code)\n"
    )
    env = {"REFRESH_ASSETS_WAREHOUSE": str(warehouse), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "HEAVY [] EXIT 1" in done.stdout, done.stdout + done.stderr
