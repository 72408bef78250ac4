"""The champion registry: numbered model versions plus an append-only log of champion changes.

The champion is never a mutable flag: it is the version named by the latest row of ``champion_events``,
so every promote and rollback stays auditable and a rollback is just another event. Model files live in
``<root>/models/v{N}.skops`` and are written and fsynced BEFORE the one transaction that records them,
so a crash can leave an unreferenced file but never a row pointing at a missing or partial file.

DuckDB allows one read-write process per database file, and in one process refuses a read-only and a
read-write connection at the same time. So each operation opens a short-lived connection, retries while
another process holds the lock (up to ``lock_timeout_seconds``), and operations of one process on one
registry are serialised by a lock.

Every change is also written as one checksummed, hash-chained record in ``<root>/journal/`` (core/journal.py):
first as ``.pending``, then the transaction, then the record is confirmed. ``rebuild_registry`` (``refresh-assets
registry rebuild``) restores a damaged or lost registry.duckdb from those records exactly; ``verify_registry``
checks the database, the journal and the model files against each other. A registry made before the journal has
its journal written from its rows (a backfill) the first time it is opened read-write. A damaged or missing
database fails every method with RegistryDamagedError naming the file and the rebuild command: a missing file
is never silently replaced by an empty history while the journal holds events.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from refresh_assets.core import artifacts
from refresh_assets.core import journal as journal_format
from refresh_assets.core.faults import fault_point
from refresh_assets.core.journal import Journal, JournalRecord, JournalRecordError, make_record, timestamp_text

log = logging.getLogger(__name__)

__all__ = [
    "ChampionEvent",
    "ModelRegistry",
    "ModelVersion",
    "NoChampionError",
    "RegistryDamagedError",
    "RegistryCheck",
    "RegistryLockedError",
    "RegistryRebuildRefused",
    "UnknownModelVersionError",
    "rebuild_registry",
    "verify_registry",
    "write_journal",
]

JOURNAL_DIR = "journal"
REBUILD_COMMAND = "refresh-assets registry rebuild"

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS model_versions (
        version INTEGER PRIMARY KEY,
        partition_key VARCHAR NOT NULL,
        algorithm VARCHAR NOT NULL,
        metrics_json VARCHAR NOT NULL,
        dataset_hash VARCHAR NOT NULL,
        model_file VARCHAR NOT NULL,          -- relative to the registry root, so the folder can move
        model_sha256 VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,        -- UTC
        reason VARCHAR NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS champion_events (
        event_id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL REFERENCES model_versions (version),
        action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
        partition_key VARCHAR,
        run_id VARCHAR NOT NULL,
        event_at TIMESTAMP NOT NULL,          -- UTC ("at" is an SQL keyword)
        reason VARCHAR NOT NULL
    )
    """,
)

_VERSION_COLUMNS = (
    "version, partition_key, algorithm, metrics_json, dataset_hash, model_file, model_sha256, run_id, "
    "created_at, reason"
)
_EVENT_COLUMNS = "event_id, version, action, partition_key, run_id, event_at, reason"


class RegistryLockedError(RuntimeError):
    """Another process kept the registry database locked for longer than the timeout."""


class RegistryDamagedError(RuntimeError):
    """The registry's DuckDB file cannot be read (truncated, overwritten): not transient, never retried."""


def _rebuild_hint(root: Path) -> str:
    return f"`{REBUILD_COMMAND} --registry {root}`"


def damaged_message(db_path: Path, models_dir: Path, error: BaseException) -> str:
    """One line a user can act on: which file, what DuckDB said, what is intact and what to do."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    journal = Journal(db_path.parent / JOURNAL_DIR)
    events = journal.count()
    if events:
        return (f"the registry file {db_path} is damaged ({first}); the model files in {models_dir} and the journal "
                f"{journal.dir} ({events} events) are intact: run {_rebuild_hint(db_path.parent)} to restore it "
                "from the journal (the damaged file is kept aside)")
    return (f"the registry file {db_path} is damaged ({first}); the model files in {models_dir} are intact but there "
            f"is no journal to run `{REBUILD_COMMAND}` from (a registry made before the journal). Restore "
            f"{db_path.name} from a backup, or move it aside (mv {db_path} {db_path}.damaged) to start an empty "
            "champion history; the next refresh then promotes a first champion")


def missing_message(db_path: Path, journal_dir: Path, events: int) -> str:
    return (f"the registry file {db_path} is missing but the journal {journal_dir} has {events} events: run "
            f"{_rebuild_hint(db_path.parent)} to restore it (an empty registry here would lose that history)")


def behind_message(db_path: Path, journal_dir: Path, db_events: int, journal_events: list[int]) -> str:
    return (f"the registry file {db_path} has {db_events} events but the journal {journal_dir} records events up to "
            f"{max(journal_events)}: registry.duckdb is older than its journal (restored from an old backup, or "
            f"recreated empty): run {_rebuild_hint(db_path.parent)} to restore the whole history")


class RegistryRebuildRefused(RuntimeError):
    """``rebuild`` / ``journal`` would lose or invent history: refused, with what ``--force`` would drop."""


class UnknownModelVersionError(KeyError):
    """A version number that the registry has never recorded."""

    def __str__(self) -> str:  # KeyError would print the message wrapped in quotes
        return str(self.args[0]) if self.args else "unknown model version"


class NoChampionError(LookupError):
    """A champion was needed but none has been promoted yet."""


def _utc(value: datetime) -> datetime:
    """DuckDB TIMESTAMP is naive; everything stored is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _json_safe(value: Any) -> Any:
    """Metrics may hold numpy scalars or NaN; JSON for the CLI must not (NaN becomes null)."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if callable(getattr(value, "tolist", None)):  # numpy scalar or array
        converted = value.tolist()
        return _json_safe(converted) if isinstance(converted, list) else _json_safe_scalar(converted)
    return _json_safe_scalar(value)


def _json_safe_scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class ModelVersion:
    """One promoted model file and the evidence it was promoted on."""

    version: int
    partition_key: str
    algorithm: str
    metrics: dict
    dataset_hash: str
    model_path: str  # absolute path of the registry's copy
    model_sha256: str
    run_id: str
    created_at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


@dataclass(frozen=True)
class ChampionEvent:
    """One change of champion: 'promote' of a new version or 'rollback' to an earlier one."""

    event_id: int
    version: int
    action: str
    partition_key: str | None
    run_id: str
    at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


# One lock per database file for the whole process: DuckDB refuses mixed read-only/read-write
# connections within a process, and version numbers are computed as max + 1.
_PROCESS_LOCKS: dict[Path, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(db_path: Path) -> threading.RLock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(db_path, threading.RLock())


def _is_lock_conflict(error: BaseException) -> bool:
    message = str(error).lower()
    if isinstance(error, duckdb.IOException):
        return "lock" in message
    # Same process, other configuration (e.g. a foreign read-only connection): also transient.
    return isinstance(error, duckdb.ConnectionException) and "different configuration" in message


#: words of DuckDB errors that are the file's content, not a lock or a full disk: the same on every attempt
_DAMAGE_WORDS = ("corrupt", "checksum", "not a valid duckdb", "could not read enough bytes", "invalid database",
                 "failed to read database header")
_NOT_DAMAGE_WORDS = ("permission", "no space left", "read-only file system", "disk quota")


def _is_damage(error: BaseException, *, connecting: bool) -> bool:
    """A DuckDB error that says the file is damaged. When connecting, any I/O error but a lock, a permission or a
    full disk; afterwards only errors that name the damage (an I/O error on write is a full disk, not damage)."""
    if not isinstance(error, duckdb.Error) or _is_lock_conflict(error):
        return False
    message = str(error).lower()
    if any(words in message for words in _NOT_DAMAGE_WORDS):
        return False
    if connecting and isinstance(error, duckdb.IOException):
        return True
    return any(words in message for words in _DAMAGE_WORDS)


def _rollback_quietly(connection: duckdb.DuckDBPyConnection) -> None:
    """Roll back without masking the original error (ROLLBACK fails if COMMIT already ended the transaction)."""
    try:
        connection.execute("ROLLBACK")
    except duckdb.Error:
        pass


# -- rows <-> journal records ------------------------------------------------------------------------------


def _metrics_json(metrics: Mapping[str, Any]) -> str:
    return json.dumps(_json_safe(metrics), sort_keys=True)


def _version_fields(row: tuple) -> dict[str, Any]:
    """A model_versions row (in _VERSION_COLUMNS order) as the journal stores it."""
    (version, partition_key, algorithm, metrics_json, dataset_hash, model_file, model_sha256, run_id,
     created_at, reason) = row
    return {"version": int(version), "partition_key": partition_key, "algorithm": algorithm,
            "metrics_json": metrics_json, "dataset_hash": dataset_hash, "model_file": model_file,
            "model_sha256": model_sha256, "run_id": run_id, "created_at": timestamp_text(created_at),
            "reason": reason}


def _event_fields(row: tuple) -> dict[str, Any]:
    """A champion_events row (in _EVENT_COLUMNS order) as the journal stores it."""
    event_id, version, action, partition_key, run_id, at, reason = row
    return {"event_id": int(event_id), "version": int(version), "action": action, "partition_key": partition_key,
            "run_id": run_id, "at": timestamp_text(at), "reason": reason}


def _version_values(fields: Mapping[str, Any]) -> list[Any]:
    """The inverse of _version_fields: values to INSERT (timestamps naive UTC, as stored)."""
    values = [fields[name] for name in journal_format.VERSION_FIELDS]
    values[8] = journal_format.parse_timestamp(fields["created_at"]).replace(tzinfo=None)
    return values


def _event_values(fields: Mapping[str, Any]) -> list[Any]:
    values = [fields[name] for name in journal_format.EVENT_FIELDS]
    values[5] = journal_format.parse_timestamp(fields["at"]).replace(tzinfo=None)
    return values


def _records_from_db(connection: duckdb.DuckDBPyConnection) -> tuple[list[JournalRecord], list[int]]:
    """The journal registry.duckdb's rows imply, chained, oldest first (a version row goes with the first event
    that names it: its promote), and the versions no event names (none, unless the file was edited)."""
    versions = {int(row[0]): row for row in connection.execute(
        f"SELECT {_VERSION_COLUMNS} FROM model_versions ORDER BY version").fetchall()}
    events = connection.execute(f"SELECT {_EVENT_COLUMNS} FROM champion_events ORDER BY event_id").fetchall()
    records: list[JournalRecord] = []
    attached: set[int] = set()
    for row in events:
        version = int(row[1])
        version_row = None
        if version not in attached and version in versions:
            version_row = _version_fields(versions[version])
            attached.add(version)
        records.append(make_record(_event_fields(row), version_row, records[-1].sha256 if records else None))
    return records, sorted(set(versions) - attached)


def _row_differences(journal_record: JournalRecord, db_record: JournalRecord) -> str:
    """'reason 'a' in the journal, 'b' in registry.duckdb; ...' for the fields that differ."""
    differences = []
    for part in ("event", "model_version"):
        ours, theirs = getattr(journal_record, part) or {}, getattr(db_record, part) or {}
        for name in sorted(set(ours) | set(theirs)):
            if ours.get(name) != theirs.get(name):
                differences.append(f"{part}.{name} {ours.get(name)!r} in the journal, {theirs.get(name)!r} in "
                                   "registry.duckdb")
    return "; ".join(differences) or "the chain link differs"


def _event_ranges(ids: list[int]) -> str:
    ids = sorted(ids)
    return f"{ids[0]}" if len(ids) == 1 else f"{ids[0]}-{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else \
        ", ".join(map(str, ids))


class ModelRegistry:
    """Champion registry in ``<root>/registry.duckdb`` with model files in ``<root>/models/``."""

    def __init__(self, root: str | Path, lock_timeout_seconds: float = 60) -> None:
        self._setup(root, lock_timeout_seconds)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as connection:
            for statement in _SCHEMA:
                connection.execute(statement)
            try:
                self._reconcile(connection)
            except OSError as error:  # e.g. a read-only mount: reading still works, the next write retries
                log.warning("cannot bring the journal %s up to date: %s", self.journal.dir, error)

    def _setup(self, root: str | Path, lock_timeout_seconds: float) -> None:
        self.root = Path(root).resolve()
        self.models_dir = self.root / "models"
        self.db_path = self.root / "registry.duckdb"
        self.journal = Journal(self.root / JOURNAL_DIR)
        self.lock_timeout_seconds = float(lock_timeout_seconds)
        self._lock = _process_lock(self.db_path)

    @classmethod
    def _unopened(cls, root: str | Path, lock_timeout_seconds: float = 60) -> ModelRegistry:
        """Paths and locks only: no file is created or read (verify and rebuild look before they touch)."""
        registry = cls.__new__(cls)
        registry._setup(root, lock_timeout_seconds)
        return registry

    # -- connections -----------------------------------------------------------------------------------

    def _open(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection; waits with backoff while another process holds the database lock."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only)
            except duckdb.Error as error:
                if not _is_lock_conflict(error):
                    if self.db_path.exists() and _is_damage(error, connecting=True):
                        raise RegistryDamagedError(damaged_message(self.db_path, self.models_dir, error)) from error
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RegistryLockedError(
                        f"registry {self.db_path} stayed locked for {self.lock_timeout_seconds:g}s: {error}"
                    ) from error
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Short-lived connection. A missing file while the journal holds events, and any sign of a damaged
        file (when connecting or reading), raise RegistryDamagedError naming the file and the rebuild command."""
        with self._lock:
            if not self.db_path.exists():
                events = self.journal.count()
                if events:
                    raise RegistryDamagedError(missing_message(self.db_path, self.journal.dir, events))
                if read_only:  # a registry without history whose file was removed: start it again
                    with self._connect(read_only=False) as connection:
                        for statement in _SCHEMA:
                            connection.execute(statement)
            connection = self._open(read_only=read_only)
            try:
                yield connection
            except duckdb.Error as error:
                if _is_damage(error, connecting=False):
                    raise RegistryDamagedError(damaged_message(self.db_path, self.models_dir, error)) from error
                raise
            finally:
                try:
                    connection.close()
                except duckdb.Error:  # closing a connection to a damaged file: the error above says it
                    pass

    # -- the journal -----------------------------------------------------------------------------------

    def _db_holds(self, connection: duckdb.DuckDBPyConnection, record: JournalRecord) -> bool:
        """Whether the committed rows are exactly the record's (its transaction committed)."""
        row = connection.execute(f"SELECT {_EVENT_COLUMNS} FROM champion_events WHERE event_id = ?",
                                 [record.event_id]).fetchone()
        if row is None or _event_fields(row) != record.event:
            return False
        if record.model_version is None:
            return True
        version_row = connection.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE version = ?",
                                         [record.version]).fetchone()
        return version_row is not None and _version_fields(version_row) == record.model_version

    def _reconcile(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Under the write lock: settle what a crashed change left, backfill a pre-journal registry, and refuse
        a database older than its journal.

        A ``.pending`` record whose rows are committed is confirmed; one whose transaction never committed is
        set aside in ``journal/interrupted/`` (that change did not happen: its run failed). No other writer can
        be between its record and its commit now, since the caller holds the database's write lock.
        """
        had_records = bool(self.journal.final_paths())
        for path in self.journal.pending_paths():
            try:
                record = self.journal.read(path)
            except JournalRecordError:
                record = None
            if record is not None and self._db_holds(connection, record):
                self.journal.confirm(path)
            else:
                moved = self.journal.set_aside([path], journal_format.INTERRUPTED_DIR)
                log.warning("set aside the record of an interrupted registry change (never committed): %s", moved[0])
        (max_event,) = connection.execute("SELECT COALESCE(MAX(event_id), 0) FROM champion_events").fetchone()
        if not had_records and max_event:
            records, _ = _records_from_db(connection)
            written = [self.journal.write_final(record) for record in records
                       if not (self.journal.dir / record.file_name()).exists()]
            if written:
                log.info("wrote the journal of a registry made before it: %d records in %s", len(written),
                         self.journal.dir)
        ahead = [event_id for event_id in self.journal.final_event_ids() if event_id > max_event]
        if ahead:
            raise RegistryDamagedError(behind_message(self.db_path, self.journal.dir, int(max_event), ahead))

    def _prev_sha256(self, connection: duckdb.DuckDBPyConnection, event_id: int) -> str | None:
        """The chain link of a new record: the last record's sha256 (recomputed from the rows if it is damaged)."""
        if event_id == 1:
            return None
        last = self.journal.last_final()
        if last is not None and last.event_id == event_id - 1:
            return last.sha256
        records, _ = _records_from_db(connection)
        return records[-1].sha256 if records else None

    def _confirm(self, pending: Path) -> None:
        """After the commit. A failure here leaves the record pending; the next write confirms it."""
        try:
            self.journal.confirm(pending)
        except OSError as error:
            log.warning("committed, but could not confirm the journal record %s (the next registry write will): %s",
                        pending, error)

    # -- reading ---------------------------------------------------------------------------------------

    def _version_from_row(self, row: tuple) -> ModelVersion:
        (version, partition_key, algorithm, metrics_json, dataset_hash, model_file, model_sha256, run_id,
         created_at, reason) = row
        return ModelVersion(
            version=int(version),
            partition_key=partition_key,
            algorithm=algorithm,
            metrics=json.loads(metrics_json),
            dataset_hash=dataset_hash,
            model_path=str(self.root / model_file),
            model_sha256=model_sha256,
            run_id=run_id,
            created_at=_utc(created_at),
            reason=reason,
        )

    @staticmethod
    def _event_from_row(row: tuple) -> ChampionEvent:
        event_id, version, action, partition_key, run_id, at, reason = row
        return ChampionEvent(int(event_id), int(version), action, partition_key, run_id, _utc(at), reason)

    def _get(self, connection: duckdb.DuckDBPyConnection, version: int) -> ModelVersion:
        row = connection.execute(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE version = ?", [int(version)]
        ).fetchone()
        if row is None:
            known = [r[0] for r in connection.execute("SELECT version FROM model_versions ORDER BY version").fetchall()]
            raise UnknownModelVersionError(f"model version {version} is not in the registry; known versions: {known}")
        return self._version_from_row(row)

    def _champion(self, connection: duckdb.DuckDBPyConnection) -> ModelVersion | None:
        columns = ", ".join(f"v.{column.strip()}" for column in _VERSION_COLUMNS.split(","))
        row = connection.execute(
            f"SELECT {columns} FROM champion_events e JOIN model_versions v ON v.version = e.version "
            "ORDER BY e.event_id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self._version_from_row(row)

    def _versions(self, connection: duckdb.DuckDBPyConnection) -> list[ModelVersion]:
        rows = connection.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions ORDER BY version").fetchall()
        return [self._version_from_row(row) for row in rows]

    def _events(self, connection: duckdb.DuckDBPyConnection) -> list[ChampionEvent]:
        rows = connection.execute(f"SELECT {_EVENT_COLUMNS} FROM champion_events ORDER BY event_id").fetchall()
        return [self._event_from_row(row) for row in rows]

    def current_champion(self) -> ModelVersion | None:
        """The version named by the latest champion event, or None before the first promote."""
        with self._connect(read_only=True) as connection:
            return self._champion(connection)

    def get(self, version: int) -> ModelVersion:
        """One version; UnknownModelVersionError (a KeyError) listing the known versions otherwise."""
        with self._connect(read_only=True) as connection:
            return self._get(connection, version)

    def versions(self) -> list[ModelVersion]:
        """All versions, oldest first."""
        with self._connect(read_only=True) as connection:
            return self._versions(connection)

    def events(self) -> list[ChampionEvent]:
        """All champion changes, oldest first."""
        with self._connect(read_only=True) as connection:
            return self._events(connection)

    # -- writing ---------------------------------------------------------------------------------------

    def _verify_file(self, model_version: ModelVersion) -> None:
        path = Path(model_version.model_path)
        if not path.is_file():
            raise artifacts.ModelIntegrityError(f"model file {path} of version {model_version.version} is missing")
        actual = artifacts.sha256_file(path)
        if actual != model_version.model_sha256:
            raise artifacts.ModelIntegrityError(
                f"model file {path} of version {model_version.version} has sha256 {actual}, "
                f"expected {model_version.model_sha256}"
            )

    @staticmethod
    def _insert_version(connection: duckdb.DuckDBPyConnection, model_version: ModelVersion, model_file: str) -> None:
        connection.execute(
            f"INSERT INTO model_versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                model_version.version,
                model_version.partition_key,
                model_version.algorithm,
                _metrics_json(model_version.metrics),
                model_version.dataset_hash,
                model_file,
                model_version.model_sha256,
                model_version.run_id,
                model_version.created_at.replace(tzinfo=None),
                model_version.reason,
            ],
        )

    @staticmethod
    def _insert_event(
        connection: duckdb.DuckDBPyConnection,
        *,
        event_id: int,
        version: int,
        action: str,
        partition_key: str | None,
        run_id: str,
        at: datetime,
        reason: str,
    ) -> ChampionEvent:
        connection.execute(
            f"INSERT INTO champion_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [event_id, version, action, partition_key, run_id, at.replace(tzinfo=None), reason],
        )
        return ChampionEvent(int(event_id), version, action, partition_key, run_id, at, reason)

    @staticmethod
    def _next_event_id(connection: duckdb.DuckDBPyConnection) -> int:
        (next_event_id,) = connection.execute("SELECT COALESCE(MAX(event_id), 0) + 1 FROM champion_events").fetchone()
        return int(next_event_id)

    def promote(
        self,
        model_file: str | Path,
        *,
        algorithm: str,
        partition_key: str,
        metrics: Mapping[str, Any],
        dataset_hash: str,
        run_id: str,
        reason: str,
        expected_sha256: str | None = None,
    ) -> ModelVersion:
        """Copy ``model_file`` in as version N = max + 1 and make it champion.

        ``expected_sha256`` (e.g. from the candidate's manifest) proves the file promoted is the one that
        was evaluated. The copy is durable and verified before the single transaction that records the
        version and the 'promote' event; if that transaction fails nothing is recorded and the copy is
        removed. The read-write connection is held throughout, so concurrent promoters are serialised by
        DuckDB's file lock and cannot both claim version N.
        """
        data = (model_file if hasattr(model_file, "read_bytes") else Path(model_file)).read_bytes()  # Path or UPath
        source_sha256 = artifacts.sha256_bytes(data)
        if expected_sha256 is not None and source_sha256 != expected_sha256.lower():
            raise artifacts.ModelIntegrityError(
                f"model file {model_file} has sha256 {source_sha256}, expected {expected_sha256}"
            )
        artifacts.check_model_types(data, source_sha256)  # never register a model that load_model would refuse

        with self._connect(read_only=False) as connection:
            self._reconcile(connection)
            (version,) = connection.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions").fetchone()
            version = int(version)
            event_id = self._next_event_id(connection)
            relative_file = f"models/v{version}.skops"
            destination = self.root / relative_file
            # An orphan from a crashed promote may sit here; nothing references it, so replace it.
            artifacts.atomic_write_bytes(destination, data)
            now = datetime.now(timezone.utc)
            model_version = ModelVersion(
                version=version,
                partition_key=partition_key,
                algorithm=algorithm,
                metrics=_json_safe(dict(metrics)),
                dataset_hash=dataset_hash,
                model_path=str(destination),
                model_sha256=source_sha256,
                run_id=run_id,
                created_at=now,
                reason=reason,
            )
            pending: Path | None = None
            try:
                self._verify_file(model_version)
                # The journal record first (as .pending), then the transaction, then the record is confirmed.
                record = make_record(
                    _event_fields((event_id, version, "promote", partition_key, run_id, now, reason)),
                    _version_fields((version, partition_key, algorithm, _metrics_json(model_version.metrics),
                                     dataset_hash, relative_file, source_sha256, run_id, now, reason)),
                    self._prev_sha256(connection, event_id),
                )
                pending = self.journal.write_pending(record)
                connection.execute("BEGIN TRANSACTION")
                try:
                    self._insert_version(connection, model_version, relative_file)
                    self._insert_event(
                        connection, event_id=event_id, version=version, action="promote",
                        partition_key=partition_key, run_id=run_id, at=now, reason=reason,
                    )
                    fault_point("registry:before_commit")
                    connection.execute("COMMIT")
                except BaseException:
                    _rollback_quietly(connection)
                    raise
            except BaseException:
                destination.unlink(missing_ok=True)
                if pending is not None:
                    pending.unlink(missing_ok=True)  # its transaction did not commit: that change never happened
                raise
            self._confirm(pending)
        return model_version

    def rollback(
        self, version: int, *, run_id: str, reason: str, partition_key: str | None = None
    ) -> ModelVersion:
        """Make an earlier version champion again by appending a 'rollback' event.

        The version's file is hash-checked first, so a rollback cannot point production at a missing or
        tampered model. ``partition_key`` optionally records which partition's run asked for it.
        """
        with self._connect(read_only=False) as connection:
            self._reconcile(connection)
            model_version = self._get(connection, version)
            self._verify_file(model_version)
            event_id = self._next_event_id(connection)
            at = datetime.now(timezone.utc)
            record = make_record(
                _event_fields((event_id, model_version.version, "rollback", partition_key, run_id, at, reason)),
                None,
                self._prev_sha256(connection, event_id),
            )
            pending = self.journal.write_pending(record)
            try:
                connection.execute("BEGIN TRANSACTION")
                try:
                    self._insert_event(
                        connection, event_id=event_id, version=model_version.version, action="rollback",
                        partition_key=partition_key, run_id=run_id, at=at, reason=reason,
                    )
                    connection.execute("COMMIT")
                except BaseException:
                    _rollback_quietly(connection)
                    raise
            except BaseException:
                pending.unlink(missing_ok=True)
                raise
            self._confirm(pending)
        return model_version

    # -- models and reporting --------------------------------------------------------------------------

    def load_model(self, version: int | None = None) -> Any:
        """Load a version (default: the current champion), refusing a file whose hash is not the recorded one."""
        if version is None:
            model_version = self.current_champion()
            if model_version is None:
                raise NoChampionError(f"registry {self.root} has no champion yet: promote a model first")
        else:
            model_version = self.get(version)
        try:
            return artifacts.load_model(model_version.model_path, expected_sha256=model_version.model_sha256)
        except FileNotFoundError as error:
            raise artifacts.ModelIntegrityError(
                f"the model file of v{model_version.version} ({model_version.algorithm}) is missing: "
                f"{model_version.model_path} (sha256 {model_version.model_sha256}); restore that file, or make "
                f"another version champion with `refresh-assets rollback`") from error

    def history(self) -> list[dict[str, Any]]:
        """Champion events joined with their version's algorithm, metrics and dataset, oldest first (JSON-safe)."""
        with self._connect(read_only=True) as connection:
            versions = {model_version.version: model_version for model_version in self._versions(connection)}
            events = self._events(connection)
        rows: list[dict[str, Any]] = []
        for event in events:
            model_version = versions[event.version]
            row = event.to_dict()
            row.update(
                algorithm=model_version.algorithm,
                metrics=_json_safe(model_version.metrics),
                dataset_hash=model_version.dataset_hash,
                model_sha256=model_version.model_sha256,
                version_partition_key=model_version.partition_key,
            )
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Whole registry as JSON-safe data for a CLI: champion, versions and events from one snapshot."""
        with self._connect(read_only=True) as connection:
            champion = self._champion(connection)
            versions = self._versions(connection)
            events = self._events(connection)
        return {
            "root": str(self.root),
            "champion": None if champion is None else champion.to_dict(),
            "versions": [model_version.to_dict() for model_version in versions],
            "events": [event.to_dict() for event in events],
        }


# -- verify, rebuild, journal (the `refresh-assets registry` commands) -------------------------------------


@dataclass
class RegistryCheck:
    """What ``verify_registry`` found: ``problems`` make it inconsistent; ``notes`` are settled states."""

    root: Path
    events: int = 0
    versions: int = 0
    champion: int | None = None
    journal_records: int = 0
    model_files: int = 0
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.ok:
            champion = "no champion yet" if self.champion is None else f"champion v{self.champion}"
            lines = [f"registry {self.root}: consistent - {self.events} events, {self.versions} versions, {champion}; "
                     f"{self.journal_records} journal records, checksums and chain valid; {self.model_files} model "
                     "files match their sha256"]
        else:
            count = len(self.problems)
            lines = [f"registry {self.root}: NOT consistent ({count} problem{'s' if count > 1 else ''}):"]
            lines += [f"  - {problem}" for problem in self.problems]
            lines += [f"  fix: {fix}" for fix in self.fixes]
        return lines + [f"  note: {note}" for note in self.notes]


def _check_model_files(root: Path, version_rows: list[dict[str, Any]], check: RegistryCheck) -> None:
    for row in version_rows:
        path = root / row["model_file"]
        if not path.is_file():
            check.problems.append(f"model file {row['model_file']} of v{row['version']} is missing: restore it "
                                  "(model files are never rewritten), or roll back to another version")
            continue
        actual = artifacts.sha256_file(path)
        if actual != row["model_sha256"]:
            check.problems.append(f"model file {row['model_file']} of v{row['version']} has sha256 {actual[:12]}..., "
                                  f"recorded {row['model_sha256'][:12]}...: it was changed after it was registered")
        else:
            check.model_files += 1


def verify_registry(root: str | Path, lock_timeout_seconds: float = 60) -> RegistryCheck:
    """registry.duckdb against the journal: every row has its record and every record its rows, the records'
    checksums and chain hold, and every model file has its recorded sha256. Reads only; writes nothing."""
    registry = ModelRegistry._unopened(root, lock_timeout_seconds)
    check = RegistryCheck(registry.root)
    if not registry.db_path.exists() and registry.journal.is_empty():
        raise FileNotFoundError(f"no registry at {registry.root}: neither registry.duckdb nor a journal "
                                "(nothing promoted yet, or another --registry / --data-dir)")
    scan = registry.journal.scan()
    check.journal_records = scan.count
    check.problems.extend(scan.problems)
    db_records: list[JournalRecord] | None = None
    orphans: list[int] = []
    with registry._lock:
        if not registry.db_path.exists():
            check.problems.append(missing_message(registry.db_path, registry.journal.dir, scan.count))
        else:
            try:
                with registry._connect(read_only=True) as connection:
                    tables = {row[0] for row in connection.execute(
                        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
                    if {"model_versions", "champion_events"} <= tables:
                        db_records, orphans = _records_from_db(connection)
                        pending_committed = {record.event_id for record in scan.pending
                                             if registry._db_holds(connection, record)}
                    else:
                        db_records, pending_committed = [], set()
            except RegistryDamagedError as error:
                check.problems.append(str(error))
    for path in scan.bad_pending:
        check.notes.append(f"{path.name} is an unreadable pending record: the next registry write sets it aside")
    if db_records is None:  # no usable database: the journal and the model files can still be checked
        _check_model_files(registry.root, [r.model_version for r in scan.valid if r.model_version], check)
        return check
    check.events = len(db_records)
    check.versions = len([r for r in db_records if r.model_version]) + len(orphans)
    check.champion = db_records[-1].version if db_records else None
    for record in scan.pending:
        if record.event_id in pending_committed:
            check.notes.append(f"{record.label()} is committed; its record {record.path.name} is confirmed by the "
                               "next registry write")
            check.journal_records += 1
        else:
            check.notes.append(f"{record.label()} is an interrupted change (its transaction never committed): "
                               f"{record.path.name} is set aside by the next registry write or `{REBUILD_COMMAND}`")
    committed_pending = {r.event_id for r in scan.pending if r.event_id in pending_committed}
    if db_records and not scan.readable and not scan.problems and not committed_pending:
        check.problems.append(f"the journal {registry.journal.dir} is missing: registry.duckdb has {len(db_records)} "
                              "events and the journal none (a registry made before the journal). `refresh-assets "
                              f"registry journal --registry {registry.root}` writes it from registry.duckdb (so does "
                              "the next promote or rollback)")
    else:
        missing_ids = [r.event_id for r in db_records if r.event_id not in scan.readable
                       and r.event_id not in committed_pending]
        journal_last = max([*scan.readable, *(e for e in committed_pending), 0])
        beyond_journal = [i for i in missing_ids if i > journal_last]
        if beyond_journal:
            check.problems.append(f"events {_event_ranges(beyond_journal)} are in registry.duckdb but not in the "
                                  f"journal: `refresh-assets registry journal --registry {registry.root}` writes them")
        for record in db_records:
            ours = scan.readable.get(record.event_id)
            if ours is not None and not ours.same_rows(record):
                check.problems.append(f"{record.label()}: {_row_differences(ours, record)} (`{REBUILD_COMMAND}` "
                                      "if the journal is right, `refresh-assets registry journal --force` if "
                                      "registry.duckdb is)")
        ahead = [i for i in scan.readable if i > len(db_records)]
        if ahead:
            check.problems.append(behind_message(registry.db_path, registry.journal.dir, len(db_records), ahead))
        if scan.problems and not any("registry journal" in p for p in check.problems):
            check.fixes.append(f"registry.duckdb is readable: `refresh-assets registry journal --registry "
                               f"{registry.root}` rewrites the damaged journal records from it")
    for version in orphans:
        check.problems.append(f"v{version} is in registry.duckdb but no event registers it (the file was edited)")
    _check_model_files(registry.root, [r.model_version for r in db_records if r.model_version], check)
    return check


def _build_database(path: Path, records: list[JournalRecord]) -> None:
    """A new DuckDB file holding exactly the records' rows, checkpointed, fsynced and checked."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    connection = duckdb.connect(str(path))
    try:
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute("BEGIN TRANSACTION")
        for record in sorted((r for r in records if r.model_version), key=lambda r: r.version):
            connection.execute(f"INSERT INTO model_versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               _version_values(record.model_version))
        for record in records:
            connection.execute(f"INSERT INTO champion_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               _event_values(record.event))
        connection.execute("COMMIT")
        connection.execute("CHECKPOINT")
    finally:
        connection.close()
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    check = duckdb.connect(str(path), read_only=True)
    try:
        rebuilt, orphans = _records_from_db(check)
    finally:
        check.close()
    if [r.sha256 for r in rebuilt] != [r.sha256 for r in records] or orphans:
        raise RuntimeError(f"the rebuilt {path} does not read back as the journal: not installed")


def _aside_name(path: Path, word: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate, n = path.with_name(f"{path.name}.{word}-{stamp}"), 1
    while candidate.exists() or candidate.with_name(candidate.name + ".wal").exists():
        candidate, n = path.with_name(f"{path.name}.{word}-{stamp}.{n}"), n + 1
    return candidate


def _describe(records: list[JournalRecord]) -> str:
    champion = f"champion v{records[-1].version}" if records else "no champion"
    versions = len([r for r in records if r.model_version])
    return f"{len(records)} events, {versions} versions, {champion}"


def rebuild_registry(root: str | Path, *, force: bool = False, lock_timeout_seconds: float = 60) -> list[str]:
    """Restore registry.duckdb from the journal, exactly, and say what was done (lines to print).

    Refused (RegistryRebuildRefused) when the journal fails verification, or when a readable registry.duckdb
    holds events the journal lacks -- unless ``force``, which keeps the journal's intact events 1..k and sets
    aside what follows. The new file is built beside the old one, checked, and renamed into place; the old file
    (and its WAL) stays as ``registry.duckdb.damaged-<UTC time>``. A ``.pending`` record is kept only when the
    old file is readable and holds its rows; otherwise its change is not known to have committed and it is set
    aside in ``journal/interrupted/``.
    """
    registry = ModelRegistry._unopened(root, lock_timeout_seconds)
    db, journal = registry.db_path, registry.journal
    with registry._lock:
        scan = journal.scan()
        if not scan.readable and not scan.pending and not scan.problems:
            state = "readable" if db.exists() else "missing"
            raise RegistryRebuildRefused(f"the journal {journal.dir} holds no record: there is nothing to rebuild "
                                         f"{db.name} ({state}) from (a registry made before the journal: restore "
                                         "it from a backup)")
        old: duckdb.DuckDBPyConnection | None = None
        old_records: list[JournalRecord] | None = None
        old_state = "missing"
        if db.exists():
            try:
                old = registry._open(read_only=True)  # held until the new file is in place: no writer in between
                old_records, orphans = _records_from_db(old)
                old_state = "readable"
                if orphans:
                    old_records = None  # a hand-edited file: rebuilt, not trusted
            except (RegistryDamagedError, duckdb.Error) as error:
                old_state = "damaged"
                log.info("rebuilding the damaged %s: %s", db, error)
                if old is not None:
                    old.close()
                    old = None
        try:
            if scan.problems and not force:
                drop = f"sets aside {', '.join(scan.beyond)}" if scan.beyond else "drops nothing"
                instead = (f" ({db.name} is readable: `refresh-assets registry journal --registry {registry.root}` "
                           "repairs the journal from it instead)") if old_records is not None else ""
                raise RegistryRebuildRefused(
                    f"the journal {journal.dir} fails verification: {'; '.join(scan.problems)}. Not rebuilt; "
                    f"`--force` rebuilds from its first {len(scan.valid)} events and {drop}{instead}")
            keep = list(scan.valid)
            interrupted: list[JournalRecord] = []
            confirm: list[JournalRecord] = []
            for record in sorted(scan.pending, key=lambda r: r.event_id):
                committed = old_records is not None and any(
                    r.event_id == record.event_id and r.same_rows(record) for r in old_records)
                chained = record.event_id == len(keep) + 1 and record.prev_sha256 == (keep[-1].sha256 if keep else None)
                if committed and chained:
                    keep.append(record)
                    confirm.append(record)
                else:
                    interrupted.append(record)
            if old_records is not None:
                lost = [r for r in old_records if r.event_id > len(keep) or not r.same_rows(keep[r.event_id - 1])]
                if lost and not force:
                    raise RegistryRebuildRefused(
                        f"{db} is readable and holds events the journal does not "
                        f"({', '.join(r.label() for r in lost)}): rebuilding would lose them. `refresh-assets "
                        f"registry journal --registry {registry.root}` writes them into the journal first; `--force` "
                        "rebuilds anyway (the current file is kept aside)")
            lines: list[str] = []
            if old_records is not None and [r.sha256 for r in old_records] == [r.sha256 for r in keep]:
                lines.append(f"nothing to rebuild: {db} is readable and matches the journal ({_describe(keep)})")
            else:
                temporary = db.with_name(f".{db.name}.rebuild-{os.getpid()}")
                aside = _aside_name(db, "damaged")
                try:
                    _build_database(temporary, keep)
                    if db.exists():
                        try:
                            os.link(db, aside)  # the old name keeps pointing at it until the replace below
                        except OSError:
                            shutil.copy2(db, aside)
                    wal = db.with_name(db.name + ".wal")
                    if wal.exists():  # replayed into the new file, a stale WAL would corrupt it: it goes with the old
                        os.rename(wal, aside.with_name(aside.name + ".wal"))
                    os.replace(temporary, db)
                    artifacts.fsync_dir(db.parent)
                finally:
                    temporary.unlink(missing_ok=True)
                    temporary.with_name(temporary.name + ".wal").unlink(missing_ok=True)
                kept = f"; the {old_state} file is kept as {aside}" if aside.exists() else f" ({db.name} was missing)"
                lines.append(f"rebuilt {db} from the journal: {_describe(keep)}{kept}")
        finally:
            if old is not None:
                old.close()
        for record in confirm:
            assert record.path is not None
            journal.confirm(record.path)
        if interrupted or scan.bad_pending:
            journal.set_aside([r.path for r in interrupted if r.path] + list(scan.bad_pending),
                              journal_format.INTERRUPTED_DIR)
            labels = [r.label() for r in interrupted] + [p.name for p in scan.bad_pending]
            lines.append(f"set aside {len(labels)} interrupted change(s) not known to have committed "
                         f"({', '.join(labels)}) in {journal.dir / journal_format.INTERRUPTED_DIR}")
        if scan.beyond:
            folder = "dropped-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            journal.set_aside([journal.dir / name for name in scan.beyond], folder)
            lines.append(f"--force: dropped {len(scan.beyond)} journal record(s) after event {len(scan.valid)} "
                         f"({', '.join(scan.beyond)}), kept in {journal.dir / folder}")
    files = RegistryCheck(registry.root)
    _check_model_files(registry.root, [r.model_version for r in keep if r.model_version], files)
    lines += [f"warning: {problem}" for problem in files.problems]
    return lines


def write_journal(root: str | Path, *, force: bool = False, lock_timeout_seconds: float = 60) -> list[str]:
    """Write the journal from registry.duckdb: the records a registry made before the journal lacks, and
    replacements of damaged ones (unreadable, bad checksum, broken chain; moved to ``journal/replaced-<time>/``).
    A readable record whose rows differ from the database is only replaced with ``force``."""
    registry = ModelRegistry(root, lock_timeout_seconds)  # damaged, missing or older than the journal: raises
    journal = registry.journal
    with registry._connect(read_only=False) as connection:
        expected, orphans = _records_from_db(connection)
        if orphans:
            raise RegistryRebuildRefused(f"registry.duckdb has versions no event registers "
                                         f"({', '.join(f'v{v}' for v in orphans)}): it was edited; not journaled")
        scan = journal.scan()
        disagree = [r for r in expected if r.event_id in scan.readable and not scan.readable[r.event_id].same_rows(r)]
        if disagree and not force:
            raise RegistryRebuildRefused(
                "the journal and registry.duckdb disagree on " + "; ".join(
                    f"{r.label()}: {_row_differences(scan.readable[r.event_id], r)}" for r in disagree)
                + f". `{REBUILD_COMMAND}` if the journal is right; `--force` rewrites the journal from registry.duckdb")
        wanted = {r.file_name(): r for r in expected}
        good = {path.name for path in journal.final_paths()
                if path.name in wanted and scan.readable.get(wanted[path.name].event_id) is not None
                and scan.readable[wanted[path.name].event_id].sha256 == wanted[path.name].sha256
                and scan.readable[wanted[path.name].event_id].path == path}
        replaced = [path for path in journal.final_paths() if path.name not in good]
        folder = "replaced-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        journal.set_aside(replaced, folder)
        written = [journal.write_final(record) for name, record in wanted.items() if name not in good]
    if not written and not replaced:
        return [f"the journal {journal.dir} already matches registry.duckdb: {_describe(expected)}"]
    line = f"wrote {len(written)} journal record(s) from registry.duckdb into {journal.dir} ({_describe(expected)})"
    if replaced:
        line += f"; {len(replaced)} damaged or differing record(s) kept in {journal.dir / folder}"
    return [line]
