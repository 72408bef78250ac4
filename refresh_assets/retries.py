"""Only transient failures are retried: every step body is wrapped so that any other failure ends the step at once.

The jobs' ``RetryPolicy`` (jobs.py, REFRESH_ASSETS_RETRY_*) retries every exception by default, so a misnamed
column or a broken query was retried twice with backoff before the user saw the message. ``core/transient.py``
decides what is transient; anything else is re-raised as ``dg.Failure(allow_retries=False)`` with the original
error as its cause (its message and traceback stay in the run's log).
"""

from __future__ import annotations

import functools
import inspect

import dagster as dg

from refresh_assets.core.transient import is_transient


def final_failure(exc: Exception) -> Exception:
    """``exc`` itself when Dagster may retry it (transient, or already a Failure / RetryRequested), else a
    Failure that is not retried, saying what failed."""
    if isinstance(exc, (dg.Failure, dg.RetryRequested)) or is_transient(exc):
        return exc
    message = str(exc).strip() or type(exc).__name__
    return dg.Failure(description=f"{type(exc).__name__}: {message} (not retried: it would fail the same way again)",
                      allow_retries=False)


def retry_only_transient(fn):
    """Decorate an asset or check body (plain or generator): non-transient failures are not retried."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                failure = final_failure(exc)
                if failure is exc:
                    raise
                raise failure from exc
        return generator

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            failure = final_failure(exc)
            if failure is exc:
                raise
            raise failure from exc
    return wrapper
