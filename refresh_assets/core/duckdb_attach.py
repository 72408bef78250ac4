"""Short-lived DuckDB connections to a small file, for the price of an ATTACH instead of a new database.

Why: every ``duckdb.connect`` starts a new DuckDB database instance (DuckDB 2.0.1: ~20 ms, even for ``:memory:``,
most of it before the file is read), and the registry opens its file once per operation, 16-18 times in a
600-player refresh. ``ATTACH`` of the same file to one in-memory instance kept for the process takes ~2.5 ms,
connect + query + close ~32 ms against ~2.5 ms (registry file of a refresh, median of 20, Intel Xeon).

What stays the same: the file is opened, locked and checkpointed as before. A read-write ATTACH holds DuckDB's
exclusive file lock, a read-only one its shared lock, until ``close()`` detaches it (which checkpoints the WAL
into the file), so other processes see exactly the locks and errors ``duckdb.connect`` gives (same exception
types and messages: a lock conflict, a damaged or missing file). Connection state does not leak between uses: each
use gets its own cursor (its own transaction), and the file's catalog is the cursor's default, so SQL written for
a direct connection runs unchanged.

Not for users' warehouses: their SQL may name the file's catalog or change settings (``SET threads``), which on a
shared instance would reach every later use. A process that forks gets a new instance in the child (the parent's
threads do not exist there).
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import Any

import duckdb

_GUARD = threading.Lock()
_HUB: dict[int, duckdb.DuckDBPyConnection] = {}  # pid -> the process's in-memory instance
_FROM_PARENT: list[duckdb.DuckDBPyConnection] = []  # a forked child never closes its parent's instance
_NAMES = itertools.count(1)


def _hub() -> duckdb.DuckDBPyConnection:
    pid = os.getpid()
    hub = _HUB.get(pid)
    if hub is None:
        _FROM_PARENT.extend(_HUB.values())
        _HUB.clear()
        # one thread: the files attached here are small, and a pool of threads per process would only idle
        hub = _HUB[pid] = duckdb.connect(":memory:", config={"threads": 1})
    return hub


class AttachedFile:
    """A DuckDB cursor whose default catalog is one attached file; ``close()`` detaches the file (and unlocks it).

    Every other attribute is the cursor's (``execute``, ``fetchall``, ...), as on a ``duckdb.connect`` connection.
    """

    __slots__ = ("_cursor", "alias", "path", "_closed")

    def __init__(self, cursor: duckdb.DuckDBPyConnection, alias: str, path: str) -> None:
        self._cursor, self.alias, self.path, self._closed = cursor, alias, path, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def close(self) -> None:
        """Roll back what is uncommitted, then detach (checkpoint and unlock). Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._cursor.close()  # ends this cursor's transaction, if any (rolled back)
        finally:
            _detach(self.alias)

    def __enter__(self) -> AttachedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detach(alias: str) -> None:
    with _GUARD:
        cursor = _hub().cursor()
    try:
        cursor.execute(f"DETACH DATABASE IF EXISTS {alias}")
    finally:
        cursor.close()


def attach(path: str | Path, *, read_only: bool) -> AttachedFile:
    """Open ``path`` like ``duckdb.connect(path, read_only=...)`` does, on the process's shared instance.

    Raises what ``duckdb.connect`` raises for the file (IOException on a lock conflict, a damaged file, or a
    missing file opened read-only). The caller must ``close()`` it (or use it as a context manager).
    """
    with _GUARD:
        cursor = _hub().cursor()
        alias = f"attached_{next(_NAMES)}"
    quoted = str(path).replace("'", "''")
    try:
        cursor.execute(f"ATTACH '{quoted}' AS {alias}{' (READ_ONLY)' if read_only else ''}")
    except BaseException:
        cursor.close()
        raise
    attached = AttachedFile(cursor, alias, str(path))
    try:
        cursor.execute(f"USE {alias}")
    except BaseException:
        attached.close()
        raise
    return attached
