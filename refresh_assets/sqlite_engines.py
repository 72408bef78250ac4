"""One SQLAlchemy Engine per SQLite file for the embedded instance's storages, instead of one per query.

Dagster 1.13.27's SQLite run, event-log and schedule storages build a new ``Engine`` (``create_engine(...,
poolclass=NullPool)``) every time they open a connection: 502 times in a 600-player in-process refresh. A new
Engine starts with an empty compiled-statement cache and runs SQLAlchemy's first-connect initialization, so each
of those queries was compiled again. Keeping the Engine of each file took a median 0.52 s off that refresh
(0.19-0.92 s over 5 alternating pairs, 14.26 -> 13.41 s, AMD EPYC, 2026-12-04).

Each Engine also keeps one idle connection to its file (``QueuePool`` of size 1; a second use at the same time
opens an extra connection, closed after) and sets ``PRAGMA synchronous=NORMAL`` on it. Dagster puts these files in
WAL mode, where NORMAL is still safe from corruption, but a commit no longer waits for an fsync: a power loss (not
a crash of the process) can lose the last events written, as it could lose a run in flight anyway. An idle
connection holds no lock, so other processes (``dagster dev`` on the same home) read and write as before.
Before, each use reopened the file (215 opens for the three tiny runs of test_sqlite_engines, now 14) and the
refresh spent ~0.34 s in commits, most of it their fsyncs. Measured in bench_refresh's in-process child at 600
players, 4 alternating repeats: 13.27 -> 12.45 s median, 0.58-1.06 s saved per repeat (median 0.63 s; Intel Xeon,
2 cores, 2026-12-04).

Applied by ``local_runs.embedded_instance`` to the instance the CLI, ``make run``, the tests and the benchmarks
run in process. Storages of any other class (PostgreSQL, a user's own) are left alone, and so are the
webserver's, the daemon's and their run workers' instances, which Dagster builds itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterator

#: Engines kept for the event log's per-run files (the index file's is always kept): a long-lived process that
#: reads many runs would otherwise keep one Engine per run it ever touched.
MAX_RUN_ENGINES = 8


class EngineCache:
    """Engines by connection string; the least recently used beyond ``limit`` are disposed."""

    def __init__(self, limit: int = MAX_RUN_ENGINES, connect_args: dict | None = None, keep: tuple[str, ...] = ()):
        self._engines: OrderedDict[str, Any] = OrderedDict()
        self._limit = limit
        self._connect_args = connect_args or {}
        self._keep = set(keep)
        self._lock = threading.Lock()

    def get(self, conn_string: str):
        with self._lock:
            engine = self._engines.get(conn_string)
            if engine is None:
                engine = self._engines[conn_string] = _engine(conn_string, self._connect_args)
            self._engines.move_to_end(conn_string)  # the most recently used last
            evictable = [key for key in self._engines if key not in self._keep]
            for key in evictable[:max(0, len(evictable) - self._limit)]:
                self._engines.pop(key).dispose()
            return engine

    def __len__(self) -> int:
        return len(self._engines)


def _engine(conn_string: str, connect_args: dict):
    """An Engine that keeps one idle connection to the file, each connection with ``synchronous=NORMAL``."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import QueuePool

    # check_same_thread: a pooled connection may be checked out by another thread than the one that opened it
    # (QueuePool hands it to one user at a time)
    engine = create_engine(conn_string, poolclass=QueuePool, pool_size=1, max_overflow=-1,
                           connect_args={**connect_args, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _no_fsync_per_commit(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _cached_connect(storage, cache: EngineCache):
    """``SqlRunStorage`` / ``SqlScheduleStorage.connect`` as Dagster writes it, but with the kept Engine."""

    @contextmanager
    def connect() -> Iterator[Any]:
        with cache.get(storage._conn_string).connect() as conn:
            with conn.begin():
                yield conn

    return connect


def _cached_event_connect(storage, cache: EngineCache):
    """``SqliteEventLogStorage._connect`` as Dagster writes it (lock, first-use schema check), with the kept
    Engine of the shard's file."""

    @contextmanager
    def _connect(shard: str) -> Iterator[Any]:
        with storage._db_lock:
            engine = cache.get(storage.conn_string_for_shard(shard))
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    return _connect


def _cached_has_table(storage, cache: EngineCache, index_shard: str):
    """``SqliteEventLogStorage.has_table`` (asked on every asset-check and asset-tag write), on the kept Engine."""

    def has_table(table_name: str) -> bool:
        engine = cache.get(storage.conn_string_for_shard(index_shard))
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    return has_table


def keep_engines(instance) -> list[str]:
    """Give the instance's SQLite storages one Engine per file; returns the names of the storages changed."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
        INDEX_SHARD_NAME,
        SQLITE_BUSY_TIMEOUT_SECONDS,
        SqliteEventLogStorage,
    )
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage

    changed = []
    runs = instance.run_storage
    if type(runs) is SqliteRunStorage:
        runs.connect = _cached_connect(runs, EngineCache(limit=1))
        changed.append("run_storage")
    schedules = instance.schedule_storage
    if type(schedules) is SqliteScheduleStorage:
        schedules.connect = _cached_connect(schedules, EngineCache(limit=1))
        changed.append("schedule_storage")
    events = instance.event_log_storage
    if type(events) is SqliteEventLogStorage:
        cache = EngineCache(connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                            keep=(events.conn_string_for_shard(INDEX_SHARD_NAME),))
        events._connect = _cached_event_connect(events, cache)
        events.has_table = _cached_has_table(events, cache, INDEX_SHARD_NAME)
        changed.append("event_log_storage")
    return changed
