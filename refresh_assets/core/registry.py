"""The champion registry: numbered model versions plus an append-only log of champion changes.

The champion is never a mutable flag: it is the version named by the latest row of ``champion_events``,
so every promote and rollback stays auditable and a rollback is just another event. Model files live in
``<root>/models/v{N}.skops`` and are written and fsynced BEFORE the one transaction that records them,
so a crash can leave an unreferenced file but never a row pointing at a missing or partial file.

DuckDB allows one read-write process per database file, and in one process refuses a read-only and a
read-write connection at the same time. So each operation opens a short-lived connection, retries while
another process holds the lock (up to ``lock_timeout_seconds``), and operations of one process on one
registry are serialised by a lock.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from refresh_assets.core import artifacts
from refresh_assets.core.faults import fault_point

__all__ = [
    "ChampionEvent",
    "ModelRegistry",
    "ModelVersion",
    "NoChampionError",
    "RegistryDamagedError",
    "RegistryLockedError",
    "UnknownModelVersionError",
]

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


def damaged_message(db_path: Path, models_dir: Path, error: BaseException) -> str:
    """One line a user can act on: which file, what DuckDB said, what is intact and what to do."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (f"the registry file {db_path} is damaged ({first}); the model files in {models_dir} are intact. "
            f"Restore {db_path.name} from a backup, or move it aside (mv {db_path} {db_path}.damaged) to start "
            "an empty champion history; the next refresh then promotes a first champion")


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


def _rollback_quietly(connection: duckdb.DuckDBPyConnection) -> None:
    """Roll back without masking the original error (ROLLBACK fails if COMMIT already ended the transaction)."""
    try:
        connection.execute("ROLLBACK")
    except duckdb.Error:
        pass


class ModelRegistry:
    """Champion registry in ``<root>/registry.duckdb`` with model files in ``<root>/models/``."""

    def __init__(self, root: str | Path, lock_timeout_seconds: float = 60) -> None:
        self.root = Path(root).resolve()
        self.models_dir = self.root / "models"
        self.db_path = self.root / "registry.duckdb"
        self.lock_timeout_seconds = float(lock_timeout_seconds)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _process_lock(self.db_path)
        with self._connect(read_only=False) as connection:
            for statement in _SCHEMA:
                connection.execute(statement)

    # -- connections -----------------------------------------------------------------------------------

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Short-lived connection; waits with backoff while another process holds the database lock."""
        with self._lock:
            deadline = time.monotonic() + self.lock_timeout_seconds
            delay = 0.02
            while True:
                try:
                    connection = duckdb.connect(str(self.db_path), read_only=read_only)
                    break
                except (duckdb.IOException, duckdb.ConnectionException) as error:
                    if not _is_lock_conflict(error):
                        if (isinstance(error, duckdb.IOException) and self.db_path.exists()
                                and "permission" not in str(error).lower()):
                            raise RegistryDamagedError(damaged_message(self.db_path, self.models_dir, error)) from error
                        raise
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise RegistryLockedError(
                            f"registry {self.db_path} stayed locked for {self.lock_timeout_seconds:g}s: {error}"
                        ) from error
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, 1.0)
            try:
                yield connection
            finally:
                connection.close()

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
                json.dumps(_json_safe(model_version.metrics), sort_keys=True),
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
        version: int,
        action: str,
        partition_key: str | None,
        run_id: str,
        at: datetime,
        reason: str,
    ) -> ChampionEvent:
        (next_event_id,) = connection.execute("SELECT COALESCE(MAX(event_id), 0) + 1 FROM champion_events").fetchone()
        connection.execute(
            f"INSERT INTO champion_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [next_event_id, version, action, partition_key, run_id, at.replace(tzinfo=None), reason],
        )
        return ChampionEvent(int(next_event_id), version, action, partition_key, run_id, at, reason)

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
        artifacts.check_model_types(data)  # never register a model that load_model would refuse

        with self._connect(read_only=False) as connection:
            (version,) = connection.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions").fetchone()
            version = int(version)
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
            try:
                self._verify_file(model_version)
                connection.execute("BEGIN TRANSACTION")
                try:
                    self._insert_version(connection, model_version, relative_file)
                    self._insert_event(
                        connection, version=version, action="promote", partition_key=partition_key,
                        run_id=run_id, at=now, reason=reason,
                    )
                    fault_point("registry:before_commit")
                    connection.execute("COMMIT")
                except BaseException:
                    _rollback_quietly(connection)
                    raise
            except BaseException:
                destination.unlink(missing_ok=True)
                raise
        return model_version

    def rollback(
        self, version: int, *, run_id: str, reason: str, partition_key: str | None = None
    ) -> ModelVersion:
        """Make an earlier version champion again by appending a 'rollback' event.

        The version's file is hash-checked first, so a rollback cannot point production at a missing or
        tampered model. ``partition_key`` optionally records which partition's run asked for it.
        """
        with self._connect(read_only=False) as connection:
            model_version = self._get(connection, version)
            self._verify_file(model_version)
            connection.execute("BEGIN TRANSACTION")
            try:
                self._insert_event(
                    connection, version=model_version.version, action="rollback", partition_key=partition_key,
                    run_id=run_id, at=datetime.now(timezone.utc), reason=reason,
                )
                connection.execute("COMMIT")
            except BaseException:
                _rollback_quietly(connection)
                raise
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
