"""Which failures are worth retrying: only transient ones.

A lock another process holds, a timeout, a lost connection may be gone in a few seconds. A configuration, the
query contract, a dataset rule, a missing file or a bug fail the same way every time: retrying them only delays
the message by the retry policy's backoff (and, at the run level, re-runs minutes of training). The Dagster
layer (``refresh_assets/retries.py``) turns every other failure into one that Dagster does not retry.
"""

from __future__ import annotations

import errno

#: OS errors of a resource that is busy or briefly unreachable (a file lock, NFS, the network)
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
                              errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ESTALE,
                              errno.EINTR})
#: Exception class names (any module) that say "try again": database drivers' lost connections, registry locks,
#: object-store timeouts. By name, so that no driver has to be imported to classify.
TRANSIENT_NAMES = frozenset({"RegistryLockedError", "OperationalError", "InterfaceError", "ConnectTimeoutError",
                             "ReadTimeoutError", "EndpointConnectionError", "ConnectionClosedError",
                             "ServerDisconnectedError", "ClientConnectorError"})
#: DuckDB I/O errors that are the file's content, not a lock: the same on every attempt
PERMANENT_DUCKDB_IO = ("not a valid duckdb database", "could not read enough bytes", "no such file",
                       "permission denied")


def is_transient(exc: BaseException) -> bool:
    """True for a failure that may pass if the step runs again a little later."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb"):  # before the names: DuckDB has its own
        return _duckdb_transient(exc)                                  # OperationalError family
    if {cls.__name__ for cls in type(exc).__mro__} & TRANSIENT_NAMES:
        return not _is_psycopg_permanent(exc)
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError,
                                                         NotADirectoryError)):
        return exc.errno in TRANSIENT_ERRNOS
    return False


def _duckdb_transient(exc: BaseException) -> bool:
    """A DuckDB file locked by another process or a brief I/O failure; not SQL, catalog or a damaged file."""
    kind = type(exc).__name__
    message = str(exc).lower()
    if kind == "IOException":
        return not any(words in message for words in PERMANENT_DUCKDB_IO)
    return "lock" in message and kind not in ("ParserException", "BinderException", "CatalogException")


def _is_psycopg_permanent(exc: BaseException) -> bool:
    """psycopg2's OperationalError also covers a wrong password or database name: those stay."""
    message = str(exc).lower()
    return any(words in message for words in ("password authentication failed", "does not exist",
                                              "no password supplied"))
