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
KEY_COLUMNS = ("entity_id", "as_of_date")
LABEL_COLUMN = "label"
#: the row order of every dataset: by snapshot date, then entity (the split then takes contiguous runs of rows)
ROW_ORDER = ("as_of_date", "entity_id")


class DatasetContractError(ValueError):
    """The query's output or the requested window breaks the dataset contract."""


def is_transient(exc: BaseException) -> bool:
    """A warehouse error worth retrying (the file is locked by another process, an I/O hiccup), not a SQL error.

    SQL mistakes (parser, binder, catalog errors), contract violations and a damaged file fail the same way
    every time (``core/transient.py`` decides for every step).
    """
    from refresh_assets.core.transient import is_transient as transient

    return not isinstance(exc, DatasetContractError) and transient(exc)


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
    """No progress bar on stdout: the step's own log says what runs (it would also garble captured stdout).

    Results need not keep their scan order either (``fetch_frame`` sorts the rows itself), which lets DuckDB
    skip the bookkeeping of order-preserving parallel operators.
    """
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")
    return con


@contextmanager
def open_source(location: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the raw warehouse read-only: a DuckDB file, or a folder of Parquet tables (``<name>.parquet`` files
    and ``<name>/`` folders of Parquet files), local or on an object store (``s3://bucket/raw``: any fsspec URL,
    read by DuckDB through that filesystem)."""
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
        raise DatasetContractError(
            f"the warehouse {source} does not exist: point REFRESH_ASSETS_WAREHOUSE (or --warehouse) at your DuckDB "
            "file or Parquet folder, or run `refresh-assets simulate` to create the demo's")


@contextmanager
def _open_remote_parquet(url: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """Views over the Parquet tables under ``url`` (``_parquet_views``) on an fsspec filesystem.

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


def _parquet_views(con: duckdb.DuckDBPyConnection, root, where: str) -> list[str]:
    """One view per table of a Parquet folder (Path or UPath): every ``<name>.parquet`` file is table ``<name>``,
    and so is every folder ``<name>/`` holding Parquet files (at any depth, e.g. hive-style ``year=2019/``).
    Returns the table names; your query script reads them by name."""
    tables: dict[str, list[str]] = {}
    for file in sorted(root.glob("*.parquet"), key=str):
        tables.setdefault(file.name[: -len(".parquet")], []).append(str(file))
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        raise DatasetContractError(f"the warehouse {where} does not exist (or is not a folder)") from None
    for folder in sorted((d for d in entries if d.is_dir() and not d.name.startswith(".")), key=str):
        files = sorted((f for f in folder.rglob("*.parquet") if f.is_file()), key=str)
        if not files:
            continue
        if folder.name in tables:
            raise DatasetContractError(
                f"table '{folder.name}' is both a file {folder.name}.parquet and a folder {folder.name}/ under "
                f"{where}: keep one of them")
        tables[folder.name] = [str(f) for f in files]
    if not tables:
        raise DatasetContractError(
            f"no Parquet table under {where}: put one <name>.parquet file or one <name>/ folder of Parquet files "
            "per table there (or point the warehouse at a DuckDB file)")
    for name, files in tables.items():
        con.read_parquet(files).create_view(name)
    return sorted(tables)


def run_query(con: duckdb.DuckDBPyConnection, sql: str, as_of_date: dt.date,
              snapshot_dates: list[dt.date], label_horizon_days: int) -> pd.DataFrame:
    """Run a query script with bound parameters and check its output against the contract.

    The rows come back sorted by (as_of_date, entity_id) whatever order the query left them in, so the same
    data gives the same dataset file; the query itself need not (and the default one does not) sort.
    """
    params = {
        "as_of_date": as_of_date,
        "snapshot_dates": list(snapshot_dates),
        "label_horizon_days": int(label_horizon_days),
    }
    return check_contract(fetch_frame(con, sql, params, sort_by=ROW_ORDER), copy=False)


#: DuckDB result types ``fetch_frame`` converts itself, column for column as ``.df()`` would (same dtypes, same
#: values): integers as numpy ints, or pandas' nullable Int* when the column holds a NULL; floats with NaN for NULL;
#: DATE as datetime64[us]; HUGEINT (DuckDB's ``sum`` of integers, exported to Arrow as decimal128(38, 0)) as float64;
#: VARCHAR as object. ``refresh_assets_tests/unit/test_features.py`` holds the two equal.
_ARROW_TYPES = {"BIGINT": "int64", "INTEGER": "int32", "SMALLINT": "int16", "TINYINT": "int8", "DOUBLE": "double",
                "FLOAT": "float", "DATE": "date32[day]", "HUGEINT": "decimal128(38, 0)", "VARCHAR": "string"}


def fetch_frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict,
                sort_by: tuple[str, ...] = ()) -> pd.DataFrame:
    """The query's result as a pandas frame, equal to ``con.execute(sql, params).df()`` but faster on the usual types.

    ``.df()`` makes one Python string per row of a text column (0.16 s for three text columns at 633k rows); here
    each distinct string is made once and numbers come from Arrow buffers. With ``sort_by``, rows are put in that
    column order (ascending, NULLs last, ties in result order) while the columns are converted anyway: one gather per
    column instead of a sort inside the query, which would move every column once more. Results with any other type
    (or duplicate column names) take ``.df()`` and pandas' sort.
    """
    relation, names, types = open_relation(con, sql, params)
    table = fetch_arrow(relation, names, types)
    if table is None:
        frame = _execute(relation.df)
        keys = [k for k in sort_by if k in frame.columns]
        if keys and len(keys) == len(sort_by) and len(set(frame.columns)) == len(frame.columns):
            frame = frame.sort_values(keys, kind="stable", na_position="last", ignore_index=True)
        return frame
    return frame_from_arrow(table, types, sort_by)


def open_relation(con: duckdb.DuckDBPyConnection, sql: str, params: dict):
    """The bound query as a DuckDB relation, with its column names and DuckDB type names (nothing run yet)."""
    import duckdb

    try:
        relation = con.sql(sql, params=params) if params else con.sql(sql)
        if relation is None:  # a statement that returns no rows
            raise DatasetContractError("the query script returned no result set; it must end with a SELECT")
        return relation, list(relation.columns), [str(t) for t in relation.types]
    except duckdb.Error:
        # A relation that cannot bind names the parameter count ("expected 0, got 3") before the query's own
        # error; the DB-API call reports that one (an unknown table, say), so the message points at the cause.
        con.execute(sql, params)
        raise


def arrow_types_ok(names: list[str], types: list[str]) -> bool:
    """True when every column has a type ``frame_from_arrow`` converts exactly as ``.df()`` would."""
    return len(set(names)) == len(names) and all(t in _ARROW_TYPES for t in types)


def fetch_arrow(relation, names: list[str], types: list[str]):
    """Run the relation into an Arrow table, or None when some column's type needs ``.df()`` instead."""
    if not arrow_types_ok(names, types):
        return None
    table = _execute(relation.to_arrow_table)
    if [str(f.type) for f in table.schema] != [_ARROW_TYPES[t] for t in types]:  # other Arrow export settings
        return None
    return table


def frame_from_arrow(table, types: list[str], sort_by: tuple[str, ...] = ()) -> pd.DataFrame:
    """An Arrow query result (``fetch_arrow``) as the frame ``.df()`` would give, rows sorted by ``sort_by``.

    The conversion of a column depends on that column alone (its values and NULL count), so the same rows give
    the same frame whether they came from one query or were put together from several (the snapshot cache).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    names = list(table.column_names)
    order = _sort_order(table, sort_by) if sort_by and all(k in names for k in sort_by) else None
    # Arrow kernels and numpy's gathers release the GIL: columns convert on two threads at once
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(lambda i: _column_to_numpy(types[i], table.column(i), order), range(len(names))))
    return pd.DataFrame(dict(zip(names, arrays)), columns=names, copy=False)


def _execute(fetch):
    """Run the bound query; a value it cannot convert is named as a data (or parameter) problem, not a crash."""
    import duckdb

    try:
        return fetch()
    except duckdb.ConversionException as exc:
        # e.g. text in a column a user's query casts to a number, or a number too large for the type it is cast to
        raise DatasetContractError(
            f"the query script could not convert a value: {str(exc).splitlines()[0]}. Either the raw tables hold a "
            "NaN, infinite or out-of-range number (clean it at the source, or handle it in your own query script), "
            "or a parameter has the wrong type"
        ) from exc


def _sort_order(table, keys: tuple[str, ...]):
    """Row positions that sort ``table`` by ``keys`` ascending, NULLs last, stable."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [table.column(k) for k in keys]
    if all(c.null_count == 0 and (pa.types.is_integer(c.type) or pa.types.is_date32(c.type)) for c in columns):
        plain = [c.combine_chunks().view(pa.int32()) if pa.types.is_date32(c.type) else c for c in columns]
        return np.lexsort([c.to_numpy() for c in reversed(plain)])  # lexsort: last key is the primary one
    return pc.sort_indices(table.select(list(keys)), sort_keys=[(k, "ascending") for k in keys]).to_numpy()


def _column_to_numpy(kind: str, column, order):
    """One Arrow column as the array ``.df()`` would give, rows taken in ``order`` (or as they are)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    def values(array):
        out = array.to_numpy(zero_copy_only=False)
        return out if order is None else out[order]

    if kind == "VARCHAR":
        encoded = pc.dictionary_encode(column.combine_chunks())
        words = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)  # None: what .df() gives NULL
        return words[values(encoded.indices.fill_null(len(words) - 1))]
    if kind == "DATE":
        return values(column.cast(pa.timestamp("us")))
    if kind == "HUGEINT":
        return values(column.cast(pa.float64()))
    if kind in ("DOUBLE", "FLOAT") or column.null_count == 0:
        return values(column)
    # an integer column with NULLs: pandas' nullable integer of the same width
    return pd.arrays.IntegerArray(values(column.fill_null(0)), values(column.is_null()))


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
        dates = frame["as_of_date"]
        if not (dates.dtype.kind == "M" and getattr(dates.dtype, "tz", None) is None and _midnights(dates)):
            frame["as_of_date"] = pd.to_datetime(dates).dt.normalize()
    except (ValueError, TypeError) as exc:
        raise DatasetContractError(f"query output column 'as_of_date' is not a date: {exc}") from exc
    return frame


def _midnights(dates: pd.Series) -> bool:
    """True when every datetime64 value is a midnight (or NaT): normalising would change nothing."""
    import numpy as np

    ticks = dates.to_numpy().view("int64")
    per_day = np.timedelta64(1, "D").astype(dates.dtype.str.replace("M8", "m8")).astype("int64")
    return bool(((ticks % per_day == 0) | (ticks == np.iinfo("int64").min)).all())


def _first_value(column: pd.Series):
    """The first non-null value of a column, or None (read chunk by chunk: it is nearly always in the first)."""
    from refresh_assets.core.validation import first_present

    found = first_present(column, 1)
    return found[0] if found else None


def _take(rows: pd.DataFrame, keep) -> pd.DataFrame:
    """The rows where ``keep`` holds, as a frame indexed 0..n-1.

    Rows sorted by date (as ``run_query`` returns them) put each part of the split in one contiguous run: its
    columns are then views of the query result's arrays, not copies (nobody else holds that result). Any other
    selection is a masked copy.
    """
    import numpy as np
    import pandas as pd

    where = np.flatnonzero(keep)
    if len(where) and where[-1] - where[0] + 1 == len(where) and rows.columns.is_unique:
        part = rows.iloc[where[0]:where[-1] + 1]
        columns = {name: column.array if isinstance(column.dtype, pd.api.extensions.ExtensionDtype)
                   else column.to_numpy() for name, column in part.items()}
        return pd.DataFrame(columns, copy=False)
    return rows[keep].reset_index(drop=True)


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

    train = _clean_labels(_take(rows, rows_on(train_dates.__contains__)))
    holdout = _clean_labels(_take(rows, rows_on(holdout_dates.__contains__)))
    scoring = scoring_frame(_take(rows, rows_on(lambda day: day == plan.scoring_date)))
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


def scoring_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The scoring rows of one snapshot as every path stores them: no label, and an integer column with no NULL
    in these rows as a plain numpy integer.

    Why the dtypes: a query result holds an integer column with a NULL anywhere as pandas' nullable ``Int*``, so
    the same scoring rows would come back ``Int64`` from a refresh's multi-snapshot query (a NULL in an older
    snapshot) and ``int64`` from the one-snapshot query of ``build_scoring_population``: same values, different
    hash. Judging the dtype on the scoring rows alone makes both paths store the same file.
    """
    import pandas as pd

    frame = rows.drop(columns=[LABEL_COLUMN]) if LABEL_COLUMN in rows.columns else rows
    narrowed = {}
    for name, column in frame.items():
        dtype = column.dtype
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iu" and not column.isna().any():
            narrowed[name] = column.to_numpy(dtype=dtype.numpy_dtype)
    if narrowed:
        frame = frame.assign(**narrowed)
    return frame


@dataclass
class ScoringPopulation:
    """The scoring rows of one date D, built alone (the daily population), and what its manifest says."""

    scoring: pd.DataFrame
    query_sha256: str
    stats: dict = field(default_factory=dict)


def build_scoring_population(con: duckdb.DuckDBPyConnection, as_of_date: dt.date, label_horizon_days: int,
                             query_path: str | Path | None = None, log=None) -> ScoringPopulation:
    """D's scoring population alone: the query script run for the one snapshot D, the label left out.

    It costs one snapshot, not a refresh's training window, and gives the same rows, dtypes and hash as the
    scoring frame of a refresh of D (``split_dataset``), as long as the query computes each snapshot's features
    from that snapshot and ``$as_of_date`` only (the query contract). ``label_horizon_days`` is bound as in a
    refresh; D's label is NULL anyway (its horizon is not over).
    """
    import pandas as pd

    sql, query_sha = load_query(query_path)
    rows = run_query(con, sql, as_of_date, [as_of_date], label_horizon_days)
    day = pd.Timestamp(as_of_date)
    on_day = (rows["as_of_date"] == day).to_numpy()
    scoring = scoring_frame(_take(rows, on_day))
    stats = {
        "scoring": _describe(scoring, False),
        "rows_after_as_of_date": int((rows["as_of_date"] > day).sum()),
        "rows_off_plan": int(len(rows) - on_day.sum()),
    }
    if log:
        log(f"scoring population {as_of_date}: {stats['scoring']['rows']} rows, "
            f"{len(scoring.columns) - len(KEY_COLUMNS)} feature columns")
    return ScoringPopulation(scoring, query_sha, stats)
