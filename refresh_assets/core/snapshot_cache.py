"""Keep each snapshot date's query rows between refreshes, so a weekly refresh computes only what is new.

Why it is safe: under the query contract (README "Bring your own data") the rows of snapshot date t read no
raw row dated after t, and their label none after t + horizon. So the rows of t are a function of the query
text, the label horizon, whether t's label is complete, and the raw rows dated up to t (or t + horizon when
the label is complete). The cache keys each snapshot on exactly that:

* the **namespace** (part of the entry's name): the query's sha256, the label horizon, the tables and the
  column that dates each one's rows, the DuckDB version and this module's format;
* the **raw-data fingerprint** (in the entry's manifest): per table and per day, the row count and the sum of
  a hash of every row (``RawFingerprint``), folded over every day up to the date the snapshot may read.

A late-arriving or corrected row dated d therefore changes the fingerprint of every snapshot t with
t + horizon >= d (labelled) or t >= d (unlabelled), the snapshots the contract lets read it, and of no other.
A table with no single date column (or NULL dates) is part of every snapshot's fingerprint.

Entries are outputs of the output store like any other (``dataset_snapshots/<t>-<namespace>/<run>/``: an Arrow
file plus a manifest with its sha256, committed atomically); deleting the folder at any time only makes the
next refresh cold. The frames are put together from the Arrow rows exactly as a cold build converts one query
result (``features.frame_from_arrow``), so a warm build equals a cold one bit for bit
(``refresh_assets_tests/unit/test_snapshot_cache.py``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refresh_assets.core import features

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

CACHE_ASSET = "dataset_snapshots"
ENTRY_FILE = "rows.arrow"
#: bump when what an entry holds or how it is keyed changes: older entries are then simply not found
FORMAT = 1
_DATE_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE")


class SnapshotCacheError(features.DatasetContractError):
    """A setting of the snapshot cache is malformed or names something the warehouse does not have."""


def parse_date_columns(value: str | dict | None) -> dict[str, str]:
    """``"orders=order_date,customers=signup_date"`` (REFRESH_ASSETS_DATE_COLUMNS) as a dict; ``"t="``: undated."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        table, sep, column = item.partition("=")
        if not sep or not table.strip():
            raise SnapshotCacheError(
                f"REFRESH_ASSETS_DATE_COLUMNS: {item!r} is not table=column (e.g. orders=order_date,customers=signup_date)")
        out[table.strip()] = column.strip()
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class RawFingerprint:
    """Per-day content digests of the warehouse's tables (what every snapshot's cache key is built from)."""

    tables: dict[str, str | None]  # table -> the column dating its rows (None: undated, part of every key)
    undated: str  # digest of undated tables and rows with a NULL date
    days: list[dt.date] = field(default_factory=list)  # sorted
    running: list[str] = field(default_factory=list)  # digest of `undated` and every day up to days[i]
    seconds: float = 0.0
    rows: int = 0

    def through(self, day: dt.date) -> str:
        """The fingerprint of every raw row dated on or before ``day`` (plus the undated ones)."""
        i = bisect.bisect_right(self.days, day)
        return self.running[i - 1] if i else hashlib.sha256(f"undated={self.undated}".encode()).hexdigest()


def date_columns_of(con: duckdb.DuckDBPyConnection, overrides: str | dict[str, str] | None = None) -> dict[str, str | None]:
    """table -> the column that dates its rows, for every table and view of the warehouse.

    A table with exactly one DATE or TIMESTAMP column is dated by it; ``overrides`` names the column of any
    other (or ``""`` for none). A table left undated is part of every snapshot's fingerprint: any change in it
    recomputes every snapshot.
    """
    overrides = parse_date_columns(overrides)
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() UNION SELECT view_name FROM duckdb_views() "
        "WHERE NOT internal AND database_name = current_database() AND schema_name = current_schema() "
        "ORDER BY 1").fetchall()]
    unknown = sorted(set(overrides) - set(tables))
    if unknown:
        raise SnapshotCacheError(
            f"date_columns names table(s) {unknown} that the warehouse does not have (it has {tables}); "
            "fix REFRESH_ASSETS_DATE_COLUMNS")
    out: dict[str, str | None] = {}
    for table in tables:
        relation = con.sql(f"SELECT * FROM {_ident(table)} LIMIT 0")
        columns = dict(zip(relation.columns, (str(t) for t in relation.types)))
        if table in overrides:
            column = overrides[table] or None
            if column is not None and column not in columns:
                raise SnapshotCacheError(
                    f"date_columns says table {table} is dated by column {column!r}, which it does not have "
                    f"(it has {list(columns)}); fix REFRESH_ASSETS_DATE_COLUMNS")
            out[table] = column
            continue
        dated = [c for c, t in columns.items() if t in _DATE_TYPES]
        out[table] = dated[0] if len(dated) == 1 else None
    return out


def raw_fingerprint(con: duckdb.DuckDBPyConnection, tables: dict[str, str | None]) -> RawFingerprint:
    """Count and checksum every table's rows per day (one aggregate scan per table, run by DuckDB).

    The checksum of a day is the exact (HUGEINT) sum of DuckDB's ``hash`` of each row's columns: independent of
    row order, and changed by any inserted, deleted or corrected row of that day.
    """
    started = time.perf_counter()
    per_day: dict[dt.date, list[str]] = {}
    undated: list[str] = []
    total = 0
    for table, column in sorted(tables.items()):
        names = con.sql(f"SELECT * FROM {_ident(table)} LIMIT 0").columns
        row_hash = f"hash({', '.join(_ident(c) for c in names)})"
        day = f"CAST({_ident(column)} AS DATE)" if column else "CAST(NULL AS DATE)"
        rows = con.execute(
            f"SELECT {day} AS day, count(*), CAST(sum(CAST({row_hash} AS HUGEINT)) AS VARCHAR) "
            f"FROM {_ident(table)} GROUP BY ALL").fetchall()
        for when, count, checksum in rows:
            total += count
            entry = f"{table}:{count}:{checksum}"
            (undated if when is None else per_day.setdefault(when, [])).append(entry)
    undated_digest = hashlib.sha256("|".join(sorted(undated)).encode()).hexdigest()
    digest = hashlib.sha256(f"undated={undated_digest}".encode())
    days = sorted(per_day)
    running = []
    for day in days:
        digest.update(f"|{day}={','.join(sorted(per_day[day]))}".encode())
        running.append(digest.copy().hexdigest())
    return RawFingerprint(tables=dict(tables), undated=undated_digest, days=days, running=running,
                          seconds=time.perf_counter() - started, rows=total)


def namespace(query_sha256: str, label_horizon_days: int, tables: dict[str, str | None]) -> str:
    """What every entry of one cache shares: the query, the horizon, how rows are dated, the engine."""
    import duckdb

    key = json.dumps({"format": FORMAT, "query_sha256": query_sha256, "label_horizon_days": label_horizon_days,
                      "tables": tables, "duckdb": duckdb.__version__}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class CacheReport:
    """What the snapshot cache did in one build (logged, and kept in the dataset's manifest)."""

    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)  # computed date -> reason
    fingerprint_seconds: float = 0.0
    fingerprint_rows: int = 0
    query_seconds: float = 0.0
    bypassed: str | None = None  # why the cache was not used at all

    def to_dict(self) -> dict[str, Any]:
        return {"reused": self.reused, "computed": self.computed, "why": self.why,
                "fingerprint_seconds": round(self.fingerprint_seconds, 3), "fingerprint_rows": self.fingerprint_rows,
                "query_seconds": round(self.query_seconds, 3), "bypassed": self.bypassed}

    def summary(self) -> str:
        if self.bypassed:
            return f"snapshot cache not used: {self.bypassed}"
        reasons = {}
        for day in self.computed:
            reasons.setdefault(self.why.get(day, "new"), []).append(day)
        said = "; ".join(f"{why}: {', '.join(days)}" for why, days in reasons.items())
        return (f"snapshot cache: {len(self.reused)} of {len(self.reused) + len(self.computed)} snapshot(s) reused, "
                f"{len(self.computed)} computed ({said or 'none'}); fingerprint of {self.fingerprint_rows:,} raw rows "
                f"in {self.fingerprint_seconds:.2f}s")


class SnapshotCache:
    """Entries in an output store (``core/artifacts.OutputStore`` or the object-store one)."""

    def __init__(self, store, run_id: str, provenance: dict[str, Any] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        #: what every entry's manifest also records (the run's job, the warehouse it read, ...)
        self.provenance = dict(provenance or {})

    @staticmethod
    def key(day: dt.date, space: str) -> str:
        return f"{day.isoformat()}-{space}"

    def get(self, day: dt.date, space: str, fingerprint: str, label_complete: bool, log=None):
        """(Arrow rows, DuckDB types) of a valid entry, or None (absent, stale, or damaged: then recomputed)."""
        import pyarrow as pa

        from refresh_assets.core.artifacts import OutputStoreError
        from refresh_assets.core.object_store import read_output_bytes

        try:
            output_dir = self.store.current(CACHE_ASSET, self.key(day, space))
            if output_dir is None:
                return None
            manifest = self.store.read_manifest(output_dir)
            if manifest.get("fingerprint") != fingerprint or manifest.get("label_complete") != label_complete:
                return None
            data = read_output_bytes(output_dir, ENTRY_FILE, manifest)
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        except (OutputStoreError, OSError, ValueError, pa.ArrowException) as exc:
            if log:
                log(f"snapshot cache entry {day} unusable, recomputed: {exc}", "warning")
            return None
        return table, list(manifest["types"])

    def put(self, day: dt.date, space: str, fingerprint: str, label_complete: bool, table: pa.Table,
            types: list[str], as_of_date: dt.date, query_seconds: float) -> None:
        import pyarrow as pa

        key = self.key(day, space)
        started = time.perf_counter()
        with self.store.stage(CACHE_ASSET, key, self.run_id) as out:
            path = Path(out.path) / ENTRY_FILE
            options = pa.ipc.IpcWriteOptions(compression="lz4")  # a third of the size; decoded at GB/s
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table)
            out.add_file(ENTRY_FILE)
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            message = (f"snapshot {day}: {table.num_rows} rows computed by the refresh of {as_of_date} "
                       f"(label {'complete' if label_complete else 'not yet complete'})")
            out.commit({**self.provenance, "partition": key, "snapshot_date": day.isoformat(),
                        "refresh_date": as_of_date.isoformat(), "namespace": space, "fingerprint": fingerprint,
                        "label_complete": label_complete, "rows": table.num_rows, "types": types,
                        "columns": table.column_names, "inputs": {},
                        "log": [{"at": now, "level": "info", "message": message}],
                        "timings_seconds": {"query_share": round(query_seconds, 3),
                                            "write": round(time.perf_counter() - started, 3),
                                            "total": round(query_seconds + time.perf_counter() - started, 3)}})
        self._prune(key, out.committed_path)

    def _prune(self, key: str, keep) -> None:
        """Delete the superseded versions of an entry (a cache holds one per snapshot; a reader that still held the
        old one finds it gone or changed and recomputes). Local stores only; an object store keeps them."""
        import shutil

        if not isinstance(keep, Path):
            return
        for old in self.store.list_outputs(CACHE_ASSET, key):
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)


def build_dataset(con: duckdb.DuckDBPyConnection, spec: features.DatasetSpec, cache: SnapshotCache | None,
                  query_path: str | Path | None = None, date_columns: str | dict[str, str] | None = None,
                  cold: bool = False, log=None) -> tuple[features.DatasetFrames, CacheReport]:
    """``features.build_dataset`` that computes only the snapshots the cache does not hold for the current data.

    ``cold``: compute every snapshot (and refresh the cache). Without a cache, or for a query whose output has
    a type the Arrow path does not convert, this is exactly ``features.build_dataset``.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    report = CacheReport()
    plan = features.snapshot_plan(spec)
    sql, query_sha = features.load_query(query_path)

    def plain(reason: str):
        report.bypassed = reason
        started = time.perf_counter()
        frames = features.build_dataset(con, spec, query_path, log=log)
        report.query_seconds = time.perf_counter() - started
        report.computed = [str(d) for d in plan.all_dates()]
        return frames, report

    if cache is None:
        return plain("no cache configured")
    tables = date_columns_of(con, date_columns)
    fingerprint = raw_fingerprint(con, tables)
    report.fingerprint_seconds, report.fingerprint_rows = fingerprint.seconds, fingerprint.rows
    space = namespace(query_sha, spec.label_horizon_days, tables)
    horizon = dt.timedelta(days=spec.label_horizon_days)
    wanted: dict[dt.date, tuple[str, bool]] = {}
    for day in plan.all_dates():
        complete = day + horizon <= spec.as_of_date
        wanted[day] = (fingerprint.through(day + horizon if complete else day), complete)
    parts: dict[dt.date, tuple[pa.Table, list[str]]] = {}
    if not cold:
        for day, (key, complete) in wanted.items():
            hit = cache.get(day, space, key, complete, log)
            if hit is not None:
                parts[day] = hit
    missing = [day for day in plan.all_dates() if day not in parts]
    for day in missing:
        report.why[str(day)] = _why_missing(cache, day, space, wanted[day][1], cold)
    # Labelled grid dates this plan leaves out (the gap before the holdout) are next week's training dates:
    # when the query runs anyway, compute them too (one more date in the same scan), so next week need not.
    ahead = [day for day in _gap_dates(spec, plan) if missing and (cold or cache.get(
        day, space, fingerprint.through(day + horizon), True) is None)]
    for day in ahead:
        wanted[day] = (fingerprint.through(day + horizon), True)
    if log:
        log(f"snapshots: train {[str(d) for d in plan.train_dates]}, holdout "
            f"{[str(d) for d in plan.holdout_dates]}, scoring {plan.scoring_date}")
    types = None
    if missing:
        started = time.perf_counter()
        params = {"as_of_date": spec.as_of_date, "snapshot_dates": sorted([*missing, *ahead]),
                  "label_horizon_days": int(spec.label_horizon_days)}
        relation, names, types = features.open_relation(con, sql, params)
        if not features.arrow_types_ok(names, types):
            odd = sorted({f"{n} {t}" for n, t in zip(names, types) if t not in features._ARROW_TYPES})
            return plain(f"the query returns column type(s) the cache cannot store exactly ({', '.join(odd)}); "
                         "CAST them to BIGINT, DOUBLE, DATE or VARCHAR in your query to get the cache")
        table = features.fetch_arrow(relation, names, types)
        report.query_seconds = time.perf_counter() - started
        if table is None:
            return plain("DuckDB's Arrow export of the query did not have the expected types")
        if "as_of_date" not in names:
            features.check_contract(table.slice(0, 0).to_pandas())  # names the missing column
        dates = table.column("as_of_date")
        asked = pa.array(params["snapshot_dates"], pa.date32())
        if dates.null_count or not pc.all(pc.is_in(dates, value_set=asked)).as_py():
            return plain("the query returned rows for snapshot dates it was not asked for (the contract: one "
                         "row per entity and requested $snapshot_dates); built without the cache")
        # one sort by date, then each snapshot is a slice (one filter per date would scan every row each time);
        # the unsorted result is let go first, so the rows are held once, not twice (1M players: 5.7 -> GiB below)
        order = pc.array_sort_indices(dates)
        del dates, relation
        table = table.take(order)
        del order
        edges = np.array([*params["snapshot_dates"], dt.date.max], dtype="datetime64[D]")
        bounds = table.column("as_of_date").to_numpy().astype("datetime64[D]").searchsorted(edges)
        for i, day in enumerate(params["snapshot_dates"]):
            part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
            share = report.query_seconds * part.num_rows / max(table.num_rows, 1)
            cache.put(day, space, wanted[day][0], wanted[day][1], part, types, spec.as_of_date, share)
            if day in wanted and day not in ahead:
                parts[day] = (part, types)
        if ahead and log:
            log(f"snapshot cache: also computed {[str(d) for d in ahead]} (not in this plan; next refresh's)")
    known = {tuple(t) for _, t in parts.values()}
    schemas = {part.schema.remove_metadata() for part, _ in parts.values()}
    if len(known) != 1 or len(schemas) != 1:
        return plain("cached snapshots disagree on the query's column types; built cold")
    types = list(next(iter(known)))
    report.reused = [str(d) for d in plan.all_dates() if str(d) not in report.why]
    report.computed = [str(d) for d in missing]
    rows = pa.concat_tables([parts[day][0].replace_schema_metadata(None) for day in plan.all_dates()])
    frame = features.check_contract(features.frame_from_arrow(rows, types, features.ROW_ORDER), copy=False)
    if log:
        log(report.summary())
    return features.split_dataset(frame, spec, plan, query_sha, log), report


def _gap_dates(spec: features.DatasetSpec, plan: features.SnapshotPlan) -> list[dt.date]:
    """Labelled dates of the snapshot grid between the last training and the first holdout date."""
    step = dt.timedelta(days=spec.snapshot_every_days)
    if not plan.train_dates or not plan.holdout_dates:
        return []
    out, day = [], plan.holdout_dates[0] - step
    while day > plan.train_dates[-1]:
        out.append(day)
        day -= step
    return sorted(out)


def _why_missing(cache: SnapshotCache, day: dt.date, space: str, complete: bool, cold: bool) -> str:
    """Why a snapshot is computed: cold build, never cached, its label just completed, or raw data changed."""
    if cold:
        return "cold build requested"
    try:
        output_dir = cache.store.current(CACHE_ASSET, cache.key(day, space))
        manifest = cache.store.read_manifest(output_dir) if output_dir is not None else None
    except Exception:  # noqa: BLE001 - only the reason text depends on it
        manifest = None
    if manifest is None:
        return "not cached"
    if manifest.get("label_complete") != complete:
        return "label now complete"
    return "raw data changed"


def cache_root(outputs_root: str | Path):
    """The cache's folder under an output store root (a Path, or a UPath for an object-store URL)."""
    from refresh_assets.core.object_store import as_upath, is_local

    return (Path(outputs_root) if is_local(outputs_root) else as_upath(outputs_root)) / CACHE_ASSET


def describe(outputs_root: str | Path) -> list[str]:
    """One line per cached snapshot (date, namespace, rows, label, bytes) and a total: ``refresh-assets cache``."""
    root = cache_root(outputs_root)
    if not root.exists():
        return [f"no snapshot cache at {root} (the next refresh builds cold and fills it)"]
    lines, total, entries = [], 0, 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        runs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        size = sum(f.stat().st_size for run in runs for f in run.iterdir() if f.is_file())
        total += size
        pointer = folder / "current.json"
        if not pointer.exists():
            continue
        run_dir = folder / json.loads(pointer.read_text())["run_dir"]
        manifest = json.loads((run_dir / "manifest.json").read_text())
        entries += 1
        lines.append(f"  {manifest['snapshot_date']}  {manifest['namespace']}  {manifest['rows']:>10,} rows  "
                     f"label {'complete' if manifest['label_complete'] else 'open    '}  from the refresh of "
                     f"{manifest.get('refresh_date', '?')}  ({len(runs)} version(s), {size / 2**20:,.1f} MiB)")
    return [f"snapshot cache at {root}: {entries} snapshot(s), {total / 2**20:,.1f} MiB", *lines]


def drop(outputs_root: str | Path) -> str:
    """Delete the whole cache (safe at any time: the next refresh builds cold): ``refresh-assets cache drop``."""
    import shutil

    root = cache_root(outputs_root)
    if not root.exists():
        return f"no snapshot cache at {root}: nothing to drop"
    if isinstance(root, Path):
        shutil.rmtree(root)
    else:
        root.fs.rm(root.path, recursive=True)
    return f"dropped the snapshot cache at {root}; the next refresh builds every snapshot from the raw tables"
