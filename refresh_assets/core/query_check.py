"""`refresh-assets check-query`: a user's query checked against the contract in seconds, nothing trained.

It runs the query script once for the snapshot plan of one date D, exactly as a refresh does (the same
``features.snapshot_plan`` / ``load_query`` / ``run_query`` / ``split_dataset``), then every blocking rule of
``core/validation.py`` on the three frames, so a query that passes here passes the dataset step and the blocking
checks of a refresh of D with the same settings. What it reports: rows and label rate per snapshot date, each
column with its type and NULL share in train, the feature columns, the slices the guardrail would gate, and every
rule with, for a failed one, what to change.

Plain Python (DuckDB, pandas): no Dagster, no scikit-learn, no Evidently, so it starts fast.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refresh_assets.core import features
from refresh_assets.core.validation import RULES, DatasetLimits, DatasetUnderTest, RuleResult, run_rules

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

PACKAGED = f"packaged:{features.DEFAULT_QUERY}"
#: slice guardrail defaults (``ComparisonConfig.min_slice_rows`` / ``min_slice_positives``)
MIN_SLICE_ROWS = 500
MIN_SLICE_POSITIVES = 50


@dataclass
class RuleCheck:
    """One rule's verdict; a failed one says what to change (``fix``)."""

    rule: str
    passed: bool
    message: str
    fix: str = ""


@dataclass
class SnapshotStats:
    """The query's rows of one as_of_date."""

    as_of_date: str  # "(NULL)" for rows without a date
    part: str  # train | holdout | scoring | after D | not in plan
    rows: int
    label_rate: float | None
    null_labels: int


@dataclass
class ColumnStats:
    name: str
    role: str  # key | label | feature
    type: str  # number | text | date | <another type's name>
    null_share: float | None  # in train (None: train has no rows)
    #: frame -> type, where a frame's type differs from train's (a type that changes between frames)
    other_types: dict[str, str] = field(default_factory=dict)


@dataclass
class SliceStats:
    """One value of a slice column in the holdout; ``gated`` when it is large enough for the guardrail to judge."""

    column: str
    value: str
    rows: int
    positives: int
    gated: bool


@dataclass
class QueryCheck:
    partition: str
    query: str
    source: str | None
    plan: dict[str, Any] = field(default_factory=dict)
    snapshots: list[SnapshotStats] = field(default_factory=list)
    columns: list[ColumnStats] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    slice_columns: list[str] = field(default_factory=list)
    slice_choice: str = ""
    slices: list[SliceStats] = field(default_factory=list)
    rules: list[RuleCheck] = field(default_factory=list)
    total_rows: int = 0
    query_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.rules) and all(r.passed for r in self.rules)

    @property
    def failed(self) -> list[RuleCheck]:
        return [r for r in self.rules if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------------------------------------- the check


_FROM_LIMITS: Any = object()


def check_query(con: duckdb.DuckDBPyConnection, spec: features.DatasetSpec, query_path: str | Path | None,
                limits: DatasetLimits, slice_columns: list[str] | tuple[str, ...] | None = _FROM_LIMITS, *,
                min_slice_rows: int = MIN_SLICE_ROWS, min_slice_positives: int = MIN_SLICE_POSITIVES,
                source: str | None = None) -> QueryCheck:
    """Run ``query_path`` (None: the packaged query) for D's snapshot plan on ``con`` and check everything a refresh
    of D checks before training. Never raises for a bad query or bad data: each problem is a failed rule.

    ``slice_columns`` is the comparison's setting (None: chosen from the data, as ``resolve_slice_columns`` does);
    left out, ``limits.slice_columns`` is used. The ``slice_columns`` rule judges it like the other rules.
    """
    import dataclasses

    import duckdb

    if slice_columns is _FROM_LIMITS:
        slice_columns = limits.slice_columns
    else:
        limits = dataclasses.replace(limits, slice_columns=None if slice_columns is None else tuple(slice_columns))

    name = str(query_path) if query_path is not None else PACKAGED
    check = QueryCheck(partition=str(spec.as_of_date), query=name, source=source)
    started = time.perf_counter()
    try:
        plan = features.snapshot_plan(spec)
    except features.DatasetContractError as exc:
        check.rules.append(RuleCheck("plan", False, str(exc), _fix("plan", str(exc))))
        return check
    check.plan = {"train": [str(d) for d in plan.train_dates], "holdout": [str(d) for d in plan.holdout_dates],
                  "scoring": str(plan.scoring_date), "label_horizon_days": spec.label_horizon_days,
                  "snapshot_every_days": spec.snapshot_every_days}
    try:
        sql, query_sha = features.load_query(query_path)
    except (features.DatasetContractError, OSError, UnicodeDecodeError) as exc:
        message = str(exc) if isinstance(exc, features.DatasetContractError) else f"cannot read {name}: {exc}"
        check.rules.append(RuleCheck("query_file", False, message, _fix("query_file", message)))
        return check
    try:
        rows = features.run_query(con, sql, spec.as_of_date, plan.all_dates(), spec.label_horizon_days)
    except features.DatasetContractError as exc:
        message = f"{name}: {exc}"
        check.rules.append(RuleCheck("contract", False, message, _fix("contract", message)))
        return check
    except duckdb.Error as exc:
        message = f"{name}: {_first_lines(exc)}"
        check.rules.append(RuleCheck("sql", False, message, _sql_fix(con, exc)))
        return check
    finally:
        check.query_seconds = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    frames = features.split_dataset(rows, spec, plan, query_sha)
    check.total_rows = int(len(rows))
    check.snapshots = _snapshot_stats(rows, spec, plan)
    feature_names = [c for c in rows.columns if c not in (*features.KEY_COLUMNS, features.LABEL_COLUMN)]
    check.features = feature_names
    check.columns = _column_stats(rows, frames)
    check.rules.append(RuleCheck("contract", True, f"entity_id, as_of_date, label and {len(feature_names)} feature "
                                                   f"column(s), {len(rows)} rows"))
    data = DatasetUnderTest(frames.train, frames.holdout, frames.scoring, spec.as_of_date,
                            rows_after_as_of_date=int(frames.stats.get("rows_after_as_of_date", 0)))
    for result in run_rules(RULES, data, limits):
        check.rules.append(_with_fix(result))
    _slices(check, frames.holdout, slice_columns, min_slice_rows, min_slice_positives)  # judged by RULES
    check.check_seconds = round(time.perf_counter() - started, 3)
    return check


def _with_fix(result: RuleResult) -> RuleCheck:
    return RuleCheck(result.rule, bool(result.passed), result.message,
                     "" if result.passed else _fix(result.rule, result.message))


def _first_lines(exc: BaseException) -> str:
    """DuckDB's message on one line: its first line, plus its "Did you mean" hint when it gives one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    hint = [line for line in lines[1:] if line.lower().startswith("did you mean")]
    return " ".join([lines[0], *hint[:1]])


def _snapshot_stats(rows: pd.DataFrame, spec: features.DatasetSpec, plan: features.SnapshotPlan) -> list[SnapshotStats]:
    """Rows, label rate and NULL labels of every date the query returned, and of every planned date (0 rows)."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(rows["as_of_date"], sort=True)
    days = list(pd.DatetimeIndex(uniques).date)
    n = len(days) + 1  # the last slot: rows with a NULL as_of_date (code -1)
    slot = np.where(codes < 0, n - 1, codes)
    labels = pd.to_numeric(rows[features.LABEL_COLUMN], errors="coerce")
    y = np.asarray(labels.astype("float64"), dtype="float64")
    known = ~np.isnan(y)
    counts = np.bincount(slot, minlength=n)
    labelled = np.bincount(slot, weights=known, minlength=n)
    label_sum = np.bincount(slot, weights=np.where(known, y, 0.0), minlength=n)
    nulls = np.bincount(slot, weights=rows[features.LABEL_COLUMN].isna().to_numpy(), minlength=n)
    train, holdout = set(plan.train_dates), set(plan.holdout_dates)

    def part(day: dt.date) -> str:
        if day in train:
            return "train"
        if day in holdout:
            return "holdout"
        if day == plan.scoring_date:
            return "scoring"
        return "after D" if day > spec.as_of_date else "not in plan"

    stats = {}
    for i, day in enumerate(days):
        rate = float(label_sum[i] / labelled[i]) if labelled[i] else None
        stats[day] = SnapshotStats(str(day), part(day), int(counts[i]), rate, int(nulls[i]))
    for day in plan.all_dates():
        stats.setdefault(day, SnapshotStats(str(day), part(day), 0, None, 0))
    out = [stats[day] for day in sorted(stats)]
    if counts[n - 1]:
        out.append(SnapshotStats("(NULL)", "not in plan", int(counts[n - 1]), None, int(nulls[n - 1])))
    return out


def _type_name(series: pd.Series) -> str:
    """number | text | date, or the odd type's name (what the schema rule would call it)."""
    from refresh_assets.core.validation import _kind

    if series.dtype.kind == "M":
        return "date"
    kind = _kind(series)
    if kind in ("bool", "integer", "float"):
        return "number"
    return kind


def _column_stats(rows: pd.DataFrame, frames: features.DatasetFrames) -> list[ColumnStats]:
    """Every column: its role, its type (in train; in all rows when train is empty), its NULL share in train and
    the frames where its type is another one."""
    train = frames.train
    reference = train if len(train) else rows
    out = []
    for name in rows.columns:
        role = ("key" if name in features.KEY_COLUMNS else "label" if name == features.LABEL_COLUMN else "feature")
        kind = _type_name(reference[name])
        other = {}
        for frame_name, frame in (("holdout", frames.holdout), ("scoring", frames.scoring)):
            if name in frame.columns and len(frame):
                other_kind = _type_name(frame[name])
                if other_kind != kind and len(train):
                    other[frame_name] = other_kind
        share = float(train[name].isna().mean()) if len(train) else None
        out.append(ColumnStats(name, role, kind, share, other))
    return out


def _slices(check: QueryCheck, holdout: pd.DataFrame, named, min_rows: int, min_positives: int) -> None:
    """The slice columns the comparison would gate on this holdout (``evaluate.resolve_slice_columns``) and, per
    value, whether it is large enough to be gated (the ``slice_columns`` rule of RULES judges a missing one)."""
    import numpy as np
    import pandas as pd

    from refresh_assets.core.evaluate import resolve_slice_columns

    choice = resolve_slice_columns(holdout, None if named is None else list(named))
    columns = list(choice.columns)
    check.slice_columns, check.slice_choice = columns, choice.describe()
    y = np.asarray(pd.to_numeric(holdout[features.LABEL_COLUMN], errors="coerce").astype("float64"))
    for column in columns:
        values = holdout[column].astype(object).where(holdout[column].notna(), "(missing)").astype(str)
        table = pd.DataFrame({"value": values.to_numpy(), "pos": y == 1, "neg": y == 0})
        grouped = table.groupby("value", sort=True).agg(rows=("pos", "size"), pos=("pos", "sum"), neg=("neg", "sum"))
        for value, row in grouped.iterrows():
            gated = row["rows"] >= min_rows and min(row["pos"], row["neg"]) >= min_positives
            check.slices.append(SliceStats(column, str(value), int(row["rows"]), int(row["pos"]), bool(gated)))


# ---------------------------------------------------------------------------------------------- fixes


def _fix(rule: str, message: str) -> str:
    """What to change for a failed rule, from the rule and its message."""
    fixes: list[str] = []

    def when(words: str, text: str) -> None:
        if words.lower() in message.lower() and text not in fixes:
            fixes.append(text)

    if rule == "contract":
        when("missing required column", "return entity_id, as_of_date (the snapshot date) and label (1 churned / 0 "
             "stayed, NULL while as_of_date + $label_horizon_days > $as_of_date); rename with AS, e.g. "
             "churned AS label")
        when("no feature columns", "return at least one feature column (a number or text) besides entity_id, "
             "as_of_date and label")
        when("nested SQL type", "a feature holds one number or text per row: pick an element (col[1]), aggregate "
             "the list (len(col), list_sum(col)) or unnest it in a CTE")
        when("could not convert", "clean the value at the source, or TRY_CAST(col AS <type>) in the query (NULL "
             "instead of an error), or make the cast wide enough (BIGINT, DOUBLE)")
        when("is not a date", "as_of_date must be the snapshot DATE: e.g. CAST(unnest($snapshot_dates) AS DATE) "
             "AS as_of_date")
        when("no result set", "end the script with the SELECT that returns the rows")
    elif rule == "query_file":
        fixes.append("name an existing .sql file: --query FILE.sql, REFRESH_ASSETS_QUERY or the warehouse "
                     "resource's query_path; unset, the packaged churn_features.sql runs")
    elif rule == "plan":
        fixes.append("move data_start_date earlier or raise lookback_days (--set lookback_days=N), or shorten "
                     "label_horizon_days / holdout_days")
    elif rule == "schema":
        when("has type", "a feature must be a number or text: turn a date into a number (date_diff('day', col, "
             "$as_of_date)), a nested value into one value, CAST(col AS VARCHAR) for a category, or leave it out")
        when(" in train but ", "give the column one type in every snapshot: CAST(col AS DOUBLE) or "
             "CAST(col AS VARCHAR), not a UNION or JSON value that is a number in some rows and text in others")
        when("differ from train's", "return the same feature columns for every snapshot date")
        when("required feature", "return each required feature with its type, or change required_features")
        when("is missing column", "return entity_id, as_of_date and label")
        when("no feature column", "return at least one feature column")
    elif rule == "row_counts":
        when("fewer than the minimum", "a frame is (nearly) empty: look at the dates with few rows in the table "
             "above; check the query's population filter and that the warehouse holds data for those dates "
             "(data_start_date / lookback_days within its history), or lower min_train_rows / min_holdout_rows / "
             "min_scoring_rows")
        when("more than the maximum", "shorten lookback_days, or raise max_total_rows")
    elif rule == "label_values":
        when("NULL value", "label is NULL only while the horizon is incomplete: CASE WHEN as_of_date + "
             "$label_horizon_days > $as_of_date THEN NULL WHEN <churned> THEN 1 ELSE 0 END AS label")
        when("other than 0/1", "label must be 1 (churned) or 0 (stayed): CAST((<churned>) AS INTEGER), not a count, "
             "a score or text")
    elif rule == "label_rate" and "no labelled row" in message:
        fixes.append("no row with a 0/1 label: see row_counts and label_values (the table above shows the rows "
                     "and labels of each date)")
    elif rule == "label_rate":
        fixes.append("check the label's definition (1 = no activity in the $label_horizon_days days after "
                     "as_of_date) and the population; if the rate is real, set min_label_rate / max_label_rate")
    elif rule == "holdout_size":
        fixes.append("raise holdout_days (more holdout snapshots) or widen the population; for a small "
                     "population lower min_holdout_positives / min_holdout_negatives")
    elif rule == "null_rates":
        fixes.append("a feature NULL on most rows is usually a broken join or a column the source stopped "
                     "filling: fix the join key, COALESCE(col, 0) where NULL means none, or leave the column out; "
                     "or raise max_null_rate")
    elif rule == "constant_features":
        fixes.append("a feature with one value (or none) carries no signal: check the expression or join that "
                     "builds it (e.g. a LEFT JOIN that never matches), or leave the column out")
    elif rule == "unique_keys":
        fixes.append("one row per (entity_id, as_of_date): GROUP BY entity_id, as_of_date (aggregating the "
                     "features), or fix the join / UNION ALL that repeats rows; entity_id is never NULL")
    elif rule == "no_future_dates":
        fixes.append("read nothing after $as_of_date: return rows only for the dates in $snapshot_dates "
                     "(as_of_date = the snapshot date), filter events with <date> <= $as_of_date, and turn date "
                     "columns into numbers of days")
    elif rule == "slice_columns":
        fixes.append("set model_comparison's slice_columns to columns the query returns, [] for none, or leave it "
                     "empty for the automatic choice (text features with few values)")
    return "; ".join(fixes) or "see the message"


def _sql_fix(con, exc: BaseException) -> str:
    """What to change for a DuckDB error: for an unknown table, the warehouse's tables."""
    import duckdb

    text = str(exc)
    if "parameter" in text.lower() or "prepared statement" in text.lower():
        return ("use DuckDB's named parameters, all three: $as_of_date (DATE), $snapshot_dates (DATE[]) and "
                "$label_horizon_days (INTEGER); DuckDB refuses a parameter the script never uses, and values are "
                "never written into the text")
    if isinstance(exc, duckdb.ParserException):
        return "fix the syntax where the error points (the query runs on DuckDB's SQL dialect)"
    if isinstance(exc, duckdb.CatalogException) or re.search(r"table .* does not exist", text, re.I):
        try:
            tables = sorted({r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()})
        except duckdb.Error:
            tables = []
        return ("read the warehouse's tables" + (f" ({', '.join(tables)})" if tables else "")
                + "; --warehouse or REFRESH_ASSETS_WAREHOUSE picks the warehouse")
    if isinstance(exc, duckdb.BinderException):
        return "check the column names against the tables (DESCRIBE <table> in duckdb) and the types each " \
               "function takes"
    return "run the script in duckdb on the warehouse to see the error in place"


# ---------------------------------------------------------------------------------------------- output


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render(check: QueryCheck) -> str:
    """The check as a terminal report."""
    where = f" on {check.source}" if check.source else ""
    lines = [f"check-query {check.partition}: {check.query}{where}"]
    if check.plan:
        p = check.plan
        lines.append(f"snapshot plan: {len(p['train'])} train date(s) {_span(p['train'])}, {len(p['holdout'])} "
                     f"holdout {_span(p['holdout'])}, scoring {p['scoring']} (every {p['snapshot_every_days']} "
                     f"days, label horizon {p['label_horizon_days']} days)")
    if check.snapshots:
        lines.append(f"query: {check.total_rows:,} rows in {check.query_seconds:.1f}s; per snapshot date:")
        lines.append(f"  {'as_of_date':<12}{'part':<13}{'rows':>11}{'label rate':>12}{'NULL labels':>13}")
        for s in check.snapshots:
            rate = "-" if s.label_rate is None else f"{s.label_rate:.4f}"
            lines.append(f"  {s.as_of_date:<12}{s.part:<13}{s.rows:>11,}{rate:>12}{s.null_labels:>13,}")
    if check.columns:
        width = max(12, *(len(c.name) + 2 for c in check.columns))
        lines.append("columns (type, NULL share in train):")
        for c in check.columns:
            other = "".join(f"; {t} in {frame}!" for frame, t in c.other_types.items())
            lines.append(f"  {c.name:<{width}}{c.type:<8}{_pct(c.null_share):>7}  {c.role}{other}")
        lines.append(f"features ({len(check.features)}): {', '.join(check.features)}")
    if check.slice_choice:
        lines.append(check.slice_choice)
        for column in check.slice_columns:
            values = [s for s in check.slices if s.column == column]
            gated = [f"{s.value} ({s.rows:,} rows, {s.positives:,} positives)" for s in values if s.gated]
            small = [f"{s.value} ({s.rows:,})" for s in values if not s.gated]
            lines.append(f"  {column}: gated {', '.join(gated) or 'none'}"
                         + (f"; too small, reported only: {', '.join(small)}" if small else ""))
    lines.append("rules:")
    for r in check.rules:
        lines.append(f"  {'PASS' if r.passed else 'FAIL'} {r.rule}: {r.message}")
        if not r.passed and r.fix:
            lines.append(f"       fix: {r.fix}")
    failed = check.failed
    seconds = check.query_seconds + check.check_seconds
    if failed:
        lines.append(f"FAILED: {len(failed)} rule(s) ({', '.join(r.rule for r in failed)}); a refresh of "
                     f"{check.partition} with this query would stop before training ({seconds:.1f}s, nothing trained)")
    else:
        lines.append(f"OK: all {len(check.rules)} rules pass; a refresh of {check.partition} would train on these "
                     f"rows ({seconds:.1f}s, nothing trained)")
    return "\n".join(lines)


def _span(dates: list[str]) -> str:
    if not dates:
        return ""
    return dates[0] if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"
