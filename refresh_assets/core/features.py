"""Build the training / holdout / scoring frames for one refresh date by running a SQL query script on DuckDB.

Why SQL: a user points the pipeline at their own event tables by writing a query, not Python. The query
meets a small contract (see ``churn_features.sql``): named parameters in, ``entity_id, as_of_date,
<features>, label`` out. Every parameter is bound by DuckDB, never formatted into the SQL text.

The date plan is out-of-time: training snapshots end ``label_horizon_days`` before the holdout starts, so
no training label looks at a day that a holdout snapshot also sees.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the code location loads this module and must stay fast
    import duckdb
    import pandas as pd

DEFAULT_QUERY = "churn_features.sql"
RAW_TABLES = ("players", "sessions", "purchases")
KEY_COLUMNS = ("entity_id", "as_of_date")
LABEL_COLUMN = "label"


class DatasetContractError(ValueError):
    """The query's output or the requested window breaks the dataset contract."""


def is_transient(exc: BaseException) -> bool:
    """A DuckDB error worth retrying (the file is locked by another process, an I/O hiccup), not a SQL error.

    SQL mistakes (parser, binder, catalog errors) and contract violations fail the same way every time.
    """
    import duckdb

    if isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                        DatasetContractError)):
        return False
    if isinstance(exc, duckdb.IOException):
        return True
    message = str(exc).lower()
    return isinstance(exc, duckdb.Error) and ("lock" in message or "could not open" in message)


@dataclass(frozen=True)
class DatasetSpec:
    """What to build for refresh date ``as_of_date`` (the partition key)."""

    as_of_date: dt.date
    data_start_date: dt.date | None = None
    lookback_days: int = 91
    label_horizon_days: int = 14
    holdout_days: int = 14
    snapshot_every_days: int = 7

    def validate(self) -> None:
        for name in ("lookback_days", "label_horizon_days", "holdout_days", "snapshot_every_days"):
            if getattr(self, name) < 1:
                raise DatasetContractError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data_start_date is not None and self.data_start_date >= self.as_of_date:
            raise DatasetContractError(
                f"data_start_date {self.data_start_date} must be before the refresh date {self.as_of_date}"
            )

    @property
    def start(self) -> dt.date:
        return self.data_start_date or self.as_of_date - dt.timedelta(days=self.lookback_days)


@dataclass(frozen=True)
class SnapshotPlan:
    """Which snapshot dates go to training, holdout and scoring."""

    train_dates: tuple[dt.date, ...]
    holdout_dates: tuple[dt.date, ...]
    scoring_date: dt.date

    def all_dates(self) -> list[dt.date]:
        return [*self.train_dates, *self.holdout_dates, self.scoring_date]


def snapshot_plan(spec: DatasetSpec, min_train_snapshots: int = 2) -> SnapshotPlan:
    """Lay snapshots every ``snapshot_every_days`` back from D and split them out of time.

    holdout = grid dates in (L - holdout_days, L] where L = the last grid date whose label is complete
    (L + horizon <= D); training = grid dates >= start and <= first holdout date - horizon.
    """
    spec.validate()
    step = dt.timedelta(days=spec.snapshot_every_days)
    horizon = dt.timedelta(days=spec.label_horizon_days)
    grid: list[dt.date] = []
    day = spec.as_of_date
    while day >= spec.start:
        grid.append(day)
        day -= step
    grid.reverse()
    labelled = [d for d in grid if d + horizon <= spec.as_of_date]
    if not labelled:
        raise DatasetContractError(
            f"no snapshot between {spec.start} and {spec.as_of_date} has a complete "
            f"{spec.label_horizon_days}-day label; move data_start_date earlier or raise lookback_days"
        )
    last = labelled[-1]
    holdout = [d for d in labelled if d > last - dt.timedelta(days=spec.holdout_days)]
    train = [d for d in labelled if d <= holdout[0] - horizon]
    if len(train) < min_train_snapshots:
        raise DatasetContractError(
            f"only {len(train)} training snapshot(s) between {spec.start} and {holdout[0] - horizon} "
            f"(need {min_train_snapshots}); move data_start_date earlier or raise lookback_days"
        )
    return SnapshotPlan(tuple(train), tuple(holdout), spec.as_of_date)


def load_query(path: str | Path | None = None) -> tuple[str, str]:
    """Return (sql text, sha256 of the text) of a query script: the packaged default or a user's file."""
    if path is None:
        text = resources.files("refresh_assets.core.sql").joinpath(DEFAULT_QUERY).read_text()
    else:
        query_path = Path(path)
        if not query_path.is_file():
            raise DatasetContractError(f"query script not found: {query_path}")
        text = query_path.read_text()
    return text, hashlib.sha256(text.encode()).hexdigest()


def _quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No progress bar on stdout: the step's own log says what runs (it would also garble captured stdout)."""
    con.execute("SET enable_progress_bar = false")
    return con


@contextmanager
def open_source(location: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the raw warehouse read-only: a DuckDB file, or a folder of ``<table>.parquet`` files, local or on
    an object store (``s3://bucket/raw``: any fsspec URL, read by DuckDB through that filesystem)."""
    import duckdb

    if "://" in str(location) and not str(location).startswith("file://"):
        with _open_remote_parquet(str(location)) as con:
            yield con
        return
    source = Path(str(location).removeprefix("file://"))
    if source.is_dir():
        con = _quiet(duckdb.connect())
        try:
            _parquet_views(con, source, str(source))
            yield con
        finally:
            con.close()
    elif source.is_file():
        con = _quiet(duckdb.connect(str(source), read_only=True))
        try:
            yield con
        finally:
            con.close()
    else:
        raise DatasetContractError(f"raw data source not found: {source} (run `refresh-assets simulate` first?)")


@contextmanager
def _open_remote_parquet(url: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """Views over ``<url>/<table>*.parquet`` (or ``<url>/<table>/*.parquet``) on an fsspec filesystem.

    Workers on any machine read the same files; DuckDB streams them through the registered fsspec
    filesystem (s3fs, gcsfs, ... must be installed for their URLs), so nothing is copied first.
    """
    import duckdb
    from upath import UPath

    root = UPath(url)
    con = _quiet(duckdb.connect())
    try:
        con.register_filesystem(root.fs)
        _parquet_views(con, root, url)
        yield con
    finally:
        con.close()


def _parquet_views(con: duckdb.DuckDBPyConnection, root, where: str) -> None:
    """One view per raw table over ``<root>/<table>*.parquet`` or ``<root>/<table>/*.parquet`` (Path or UPath)."""
    for table in RAW_TABLES:
        files = sorted(root.glob(f"{table}*.parquet"), key=str) or sorted((root / table).glob("*.parquet"), key=str)
        if not files:
            raise DatasetContractError(f"no parquet files for table '{table}' under {where}")
        con.read_parquet([str(f) for f in files]).create_view(table)


def run_query(con: duckdb.DuckDBPyConnection, sql: str, as_of_date: dt.date,
              snapshot_dates: list[dt.date], label_horizon_days: int) -> pd.DataFrame:
    """Run a query script with bound parameters and check its output against the contract."""
    params = {
        "as_of_date": as_of_date,
        "snapshot_dates": list(snapshot_dates),
        "label_horizon_days": int(label_horizon_days),
    }
    return check_contract(fetch_frame(con, sql, params), copy=False)


#: DuckDB result types ``fetch_frame`` converts itself, column for column as ``.df()`` would (same dtypes, same
#: values): integers as numpy ints, or pandas' nullable Int* when the column holds a NULL; floats with NaN for NULL;
#: DATE as datetime64[us]; HUGEINT (DuckDB's ``sum`` of integers, exported to Arrow as decimal128(38, 0)) as float64;
#: VARCHAR as object. ``refresh_assets_tests/unit/test_features.py`` holds the two equal.
_ARROW_TYPES = {"BIGINT": "int64", "INTEGER": "int32", "SMALLINT": "int16", "TINYINT": "int8", "DOUBLE": "double",
                "FLOAT": "float", "DATE": "date32[day]", "HUGEINT": "decimal128(38, 0)", "VARCHAR": "string"}


def fetch_frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pd.DataFrame:
    """The query's result as a pandas frame, equal to ``con.execute(sql, params).df()`` but faster on the usual types.

    ``.df()`` makes one Python string per row of a text column (0.16 s for three text columns at 633k rows); here
    each distinct string is made once and numbers come from Arrow buffers. Results with any other type (or
    duplicate column names) take ``.df()``.
    """
    import warnings

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    types = [str(d[1]) for d in cursor.description]
    if len(set(names)) < len(names) or not all(t in _ARROW_TYPES for t in types):
        return cursor.df()
    with warnings.catch_warnings():  # "Arrow output on a DB-API result makes an extra copy": a cheap one here
        warnings.simplefilter("ignore")
        table = cursor.to_arrow_table()
    if [str(f.type) for f in table.schema] != [_ARROW_TYPES[t] for t in types]:  # other Arrow export settings
        return con.execute(sql, params).df()
    columns = {}
    for name, kind, column in zip(names, types, table.columns):
        if kind == "VARCHAR":
            encoded = pc.dictionary_encode(column.combine_chunks())
            words = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)  # None: what .df() gives NULL
            columns[name] = words[encoded.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)]
        elif kind == "DATE":
            columns[name] = column.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
        elif kind == "HUGEINT":
            columns[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif kind in ("DOUBLE", "FLOAT") or column.null_count == 0:
            columns[name] = column.to_numpy(zero_copy_only=False)
        else:  # an integer column with NULLs: pandas' nullable integer of the same width
            columns[name] = pd.arrays.IntegerArray(column.fill_null(0).to_numpy(zero_copy_only=False),
                                                   column.is_null().to_numpy(zero_copy_only=False))
    return pd.DataFrame(columns, columns=names)


def check_contract(frame: pd.DataFrame, copy: bool = True) -> pd.DataFrame:
    """Refuse a query result the step cannot even split: no entity_id / as_of_date / label, or no feature.

    Returns the frame with ``as_of_date`` as normalised datetimes: a copy, or ``frame`` itself changed in place
    when ``copy`` is false (for a frame nobody else holds, like a fresh query result).

    What the rows hold (label values, duplicate keys, NULL rates, dates after D, ...) is judged by the
    blocking asset checks on the stored dataset (``core/validation.py``), one place per rule.
    """
    import pandas as pd

    missing = [c for c in (*KEY_COLUMNS, LABEL_COLUMN) if c not in frame.columns]
    if missing:
        raise DatasetContractError(
            f"query output is missing required column(s) {missing}; it returned {list(frame.columns)}"
        )
    features = [c for c in frame.columns if c not in (*KEY_COLUMNS, LABEL_COLUMN)]
    if not features:
        raise DatasetContractError("query output has no feature columns besides entity_id, as_of_date, label")
    for column in features:
        if frame[column].dtype.kind != "O":  # numbers and dates: no nested values (and no copy of them)
            continue
        first = _first_value(frame[column])
        if first is not None and not isinstance(first, (str, bytes)):
            kind = type(first).__name__
            if kind in ("ndarray", "list", "dict", "tuple"):
                raise DatasetContractError(
                    f"feature '{column}' holds {kind} values (a nested SQL type): a feature must be a number or text"
                )
    if copy:
        frame = frame.copy()
    try:
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.normalize()
    except (ValueError, TypeError) as exc:
        raise DatasetContractError(f"query output column 'as_of_date' is not a date: {exc}") from exc
    return frame


def _first_value(column: pd.Series, chunk: int = 4096):
    """The first non-null value of a column, or None; reads chunk by chunk (it is nearly always in the first)."""
    for start in range(0, len(column), chunk):
        part = column.iloc[start:start + chunk]
        present = part.notna().to_numpy()
        if present.any():
            return part.iloc[int(present.argmax())]
    return None


def _clean_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """0/1 labels as int8; anything else is left as it came, for the label_values check to name."""
    labels = frame[LABEL_COLUMN]
    if labels.notna().all() and labels.isin([0, 1]).all():
        frame[LABEL_COLUMN] = labels.astype("int8")
    return frame


@dataclass
class DatasetFrames:
    """The three frames of one refresh date plus what the manifest needs to say about them."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    scoring: pd.DataFrame
    plan: SnapshotPlan
    query_sha256: str
    stats: dict = field(default_factory=dict)


def _describe(frame: pd.DataFrame, labelled: bool) -> dict:
    dates = frame["as_of_date"]
    out = {
        "rows": int(len(frame)),
        "entities": int(frame["entity_id"].nunique()),
        "first_snapshot": str(dates.min().date()) if len(frame) else None,
        "last_snapshot": str(dates.max().date()) if len(frame) else None,
        "snapshots": int(dates.nunique()),
    }
    if labelled:
        import pandas as pd

        rate = pd.to_numeric(frame[LABEL_COLUMN], errors="coerce").mean() if len(frame) else None
        out["label_rate"] = None if rate is None or pd.isna(rate) else round(float(rate), 4)
    return out


def build_dataset(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, query_path: str | Path | None = None,
                  log=None) -> DatasetFrames:
    """Run the query once for every snapshot date of D's plan and split the rows into the three frames."""
    plan = snapshot_plan(spec)
    sql, query_sha = load_query(query_path)
    if log:
        log(f"snapshots: train {[str(d) for d in plan.train_dates]}, holdout "
            f"{[str(d) for d in plan.holdout_dates]}, scoring {plan.scoring_date}")
    rows = run_query(con, sql, spec.as_of_date, plan.all_dates(), spec.label_horizon_days)
    return split_dataset(rows, spec, plan, query_sha, log)


def split_dataset(rows: pd.DataFrame, spec: DatasetSpec, plan: SnapshotPlan, query_sha: str,
                  log=None) -> DatasetFrames:
    """Split checked query rows by snapshot date into the training, holdout and scoring frames."""
    import numpy as np
    import pandas as pd

    train_dates, holdout_dates, all_dates = set(plan.train_dates), set(plan.holdout_dates), set(plan.all_dates())
    # The calendar day of every row, judged once per distinct value (a dataset has a few snapshot dates, and
    # ``.dt.date`` would make a Python date object per row); code -1 (NaT) selects the trailing False.
    codes, uniques = pd.factorize(rows["as_of_date"])
    days = list(pd.DatetimeIndex(uniques).date)

    def rows_on(keep) -> np.ndarray:
        return np.array([keep(day) for day in days] + [False], dtype=bool)[codes]

    train = _clean_labels(rows[rows_on(train_dates.__contains__)].reset_index(drop=True))
    holdout = _clean_labels(rows[rows_on(holdout_dates.__contains__)].reset_index(drop=True))
    scoring = rows[rows_on(lambda day: day == plan.scoring_date)].drop(columns=[LABEL_COLUMN]).reset_index(drop=True)
    stats = {
        "train": _describe(train, True),
        "holdout": _describe(holdout, True),
        "scoring": _describe(scoring, False),
        # rows the split drops: dated after D (the query peeked ahead; a blocking check refuses them) or
        # on a day that is no snapshot of the plan
        "rows_after_as_of_date": int(rows_on(lambda day: day > spec.as_of_date).sum()),
        "rows_off_plan": int(len(rows) - rows_on(all_dates.__contains__).sum()),
    }
    if log:
        log(f"rows: train {stats['train']['rows']} (label rate {stats['train']['label_rate']}), "
            f"holdout {stats['holdout']['rows']} (label rate {stats['holdout']['label_rate']}), "
            f"scoring {stats['scoring']['rows']}")
    return DatasetFrames(train, holdout, scoring, plan, query_sha, stats)
