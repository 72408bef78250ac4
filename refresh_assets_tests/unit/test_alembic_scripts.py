"""Dagster's migration scripts are read once per process (alembic_scripts.py), and schema checks still see the
database's own revision."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

COUNT_LOADS = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    from alembic.script import ScriptDirectory

    loads = []
    original = ScriptDirectory._load_revisions
    def counting(self):
        loads.append(self.dir)
        yield from original(self)
    ScriptDirectory._load_revisions = counting
    from refresh_assets import alembic_scripts
    if sys.argv[1] == "off":
        alembic_scripts.share_dagster_scripts = lambda: False  # what Dagster does on its own
    from refresh_assets.local_runs import embedded_instance
    import dagster as dg

    root = Path(tempfile.mkdtemp())
    instance = embedded_instance(root / "a")  # a fresh instance: three files created, stamped, checked
    instance.get_runs()
    again = dg.DagsterInstance.from_ref(instance.get_ref())  # as a step process opens the run's instance
    again.get_runs()
    again.schedule_storage.alembic_version()
    print(json.dumps({"loads": len(loads)}))
""")


def _loads(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", COUNT_LOADS, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["loads"]


def test_scripts_are_read_once_per_process_not_at_every_check():
    assert _loads("off") >= 6  # Dagster alone: at every stamp and every check
    assert _loads("on") == 1


def test_a_database_at_an_older_revision_is_still_seen_as_older(tmp_path):
    import dagster as dg
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory as PlainScriptDirectory
    from dagster._core.storage import sql
    from dagster._core.storage.runs.sqlite import sqlite_run_storage

    from refresh_assets.alembic_scripts import share_dagster_scripts, warm
    from refresh_assets.local_runs import embedded_instance

    share_dagster_scripts()
    instance = embedded_instance(tmp_path / "home")
    config = sql.get_alembic_config(sqlite_run_storage.__file__)
    plain = PlainScriptDirectory.from_config(config)
    head = plain.as_revision_number("head")
    assert warm() == head
    assert instance.run_storage.alembic_version() == (head, head)

    older = plain.get_revision(head).down_revision
    assert isinstance(older, str)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'history' / 'runs.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": older})
    engine.dispose()
    reopened = dg.DagsterInstance.from_ref(instance.get_ref())
    assert reopened.run_storage.alembic_version() == (older, head)  # `dagster instance migrate` still asked for


def test_other_script_locations_are_built_as_alembic_does(tmp_path):
    from alembic.config import Config
    from dagster._core.storage import sql

    from refresh_assets.alembic_scripts import share_dagster_scripts

    share_dagster_scripts()
    (tmp_path / "versions").mkdir()
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    first, second = sql.ScriptDirectory.from_config(config), sql.ScriptDirectory.from_config(config)
    assert first is not second  # a user's own migrations: a new directory each time, never kept
    dagster_config = sql.get_alembic_config(sql.__file__)
    assert sql.ScriptDirectory.from_config(dagster_config) is sql.ScriptDirectory.from_config(dagster_config)
