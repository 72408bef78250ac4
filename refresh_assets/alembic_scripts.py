"""Read Dagster's Alembic migration scripts once per process, not at every storage connection check.

Why: Dagster 1.13.27's ``check_alembic_revision`` (``dagster/_core/storage/sql.py``) builds a new Alembic
``ScriptDirectory`` each time a SQLite storage first connects to a file (the run, schedule and index databases,
and every run's own event file), and asks it for the ``head`` revision: that loads and executes every migration
script of ``dagster/_core/storage/alembic/versions`` again, ~20-70 ms a time. A fresh in-process refresh checked
6 times; each multiprocess step process 2-4 times (0.85 s of step time in a 600-player refresh, py-spy, AMD EPYC).
Those scripts are files of the installed Dagster: their head cannot change while a process runs.

The same holds for ``alembic.command.stamp``, which Dagster calls on every new SQLite file (a fresh instance's
three, and the event file of every new run).

What stays the same: each check still reads the database's own revision, so a database that needs
``dagster instance migrate`` is still refused as before; only the scripts' side of the comparison is kept. The name
``ScriptDirectory`` in ``dagster._core.storage.sql`` and in ``alembic.command`` is replaced by a subclass whose
``from_config`` keeps one object per set of options for Dagster's own script location and builds every other
location's (a user's own migrations) as Alembic does.

Installed by ``local_runs.embedded_instance`` (the CLI, ``make run``, tests and benchmarks) and by the multiprocess
executor's forkserver (``forkserver_heap``), which also loads the scripts before freezing its heap, so that every
step process forked from it starts with them read.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_installed = False


def _key(config) -> tuple:
    """What a ScriptDirectory is built from (``ScriptDirectory.from_config``): equal keys, equal directories."""
    return (config.get_alembic_option("script_location"), tuple(config.get_version_locations_list() or ()),
            config.get_alembic_option("file_template"), config.get_alembic_option("truncate_slug_length"),
            config.get_alembic_boolean_option("sourceless"),
            config.get_alembic_boolean_option("recursive_version_locations"),
            tuple(config.get_prepend_sys_paths_list() or ()))


def share_dagster_scripts() -> bool:
    """Make Dagster's revision checks and stamps reuse one ScriptDirectory of its scripts; True when installed now."""
    global _installed
    import alembic.command
    from alembic.script import ScriptDirectory
    from dagster._core.storage import sql

    if not (getattr(sql, "ScriptDirectory", None) is ScriptDirectory and hasattr(sql, "ALEMBIC_SCRIPTS_LOCATION")
            and getattr(alembic.command, "ScriptDirectory", None) is ScriptDirectory):
        return False  # another Dagster or Alembic than the one this was written for: leave it as it is
    with _lock:
        if _installed:
            return False
        shared: dict[tuple, ScriptDirectory] = {}

        class SharedScriptDirectory(ScriptDirectory):
            """ScriptDirectory whose ``from_config`` returns the directory built before for the same settings
            (its revision map, once read, is memoized on it)."""

            @classmethod
            def from_config(cls, config):  # noqa: D401 - Alembic's signature
                key = _key(config)
                if key[0] != sql.ALEMBIC_SCRIPTS_LOCATION:
                    return ScriptDirectory.from_config(config)
                with _lock:
                    script = shared.get(key)
                    if script is None:
                        script = shared[key] = ScriptDirectory.from_config(config)
                return script

        sql.ScriptDirectory = alembic.command.ScriptDirectory = SharedScriptDirectory
        _installed = True
        return True


def warm() -> str | None:
    """Read the migration scripts now (in the forkserver, before its heap is frozen); returns the head revision,
    or None when that failed (the checks then read them when they first need them, as Dagster does)."""
    try:
        from dagster._core.storage import sql
        from dagster._core.storage.runs.sqlite import sqlite_run_storage

        share_dagster_scripts()
        # the run storage's configuration; the event log's and the schedules' are the same file, same key
        config = sql.get_alembic_config(sqlite_run_storage.__file__)
        return sql.ScriptDirectory.from_config(config).as_revision_number("head")
    except Exception:  # noqa: BLE001 - an optimisation must never stop the forkserver from starting
        return None
