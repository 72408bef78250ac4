"""PostgreSQL restarted under a running webserver and daemon: both recover, no run is lost or duplicated.

The shared server on 5432 is never touched: the test starts a throwaway cluster of its own (the machine's
PostgreSQL binaries, as the ``postgres`` user, on a free port, in a temp folder), points the production
``dagster.yaml`` at it, launches a refresh over GraphQL, restarts the cluster (``pg_ctl restart -m fast``,
which drops every open connection) while the run's dataset step is held at a fault point, and then checks the
webserver, the run, the daemon's promotion sensor (its propagation run), the run queue and the registry.

Why a fault point and not "as soon as the run has started": dagster-postgres opens a connection per write
(NullPool), so a run rides out a restart that falls between its writes. A restart during one of Dagster's own
event writes (a step's STEP_START, say) fails that step in Dagster 1.13.27, the write is not retried, and
``run_retries`` does not re-run a step failure (``retry_on_asset_or_op_failure: false``, on purpose: an error
that repeats would fail the same way). A CI run on 2026-12-04 restarted the cluster within the first step's
STEP_START write and the run ended failed, with the failure alert sent; docs/DEPLOY.md names that window. The
pause puts the restart where the run holds no connection, so the test is the same every time.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from refresh_assets import trigger
from refresh_assets.core.registry import ModelRegistry
from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG, PRE_DRIFT
from refresh_assets_tests.integration.dagster_processes import (
    REPO,
    dagster_processes,
    free_port,
    project_env,
    wait_for,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
PARTITION = PRE_DRIFT[0]
DATABASE = "refresh_assets"
PAUSE_POINT = "training_dataset:staged"


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql (the python-svc machine has them)")
    return versions[-1].parent


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


class Cluster:
    """A throwaway PostgreSQL cluster: initdb, start, restart, stop."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="refresh_assets_pg_"))
        self.data = self.dir / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(_as_postgres(str(self.bin / tool), *args), check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -c listen_addresses={HOST} -k {self.dir}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options, "-w",
                  *extra, action)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name: str) -> None:
        import psycopg2

        con = psycopg2.connect(host=HOST, port=self.port, user="postgres", dbname="postgres", connect_timeout=5)
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()


@pytest.fixture
def cluster():
    pg = Cluster()
    try:
        pg.start()
        pg.create_database(DATABASE)
        yield pg
    finally:
        pg.stop()


def _status(port: int, run_id: str) -> str | None:
    try:
        return trigger.status(HOST, port, run_id)
    except trigger.TriggerError:
        return None  # the webserver could not reach its storage at that moment


def test_webserver_and_daemon_recover_from_a_postgres_restart(cluster, drift_warehouse, tmp_path, monkeypatch):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")  # the production instance, unchanged
    pg_env = {"REFRESH_ASSETS_PG_HOST": HOST, "REFRESH_ASSETS_PG_PORT": str(cluster.port),
              "REFRESH_ASSETS_PG_USER": "postgres", "REFRESH_ASSETS_PG_PASSWORD": "",
              "REFRESH_ASSETS_PG_DB": DATABASE}
    # the run's steps in its own process (the multiprocess executor is test_postgres_ops' business)
    # the dataset step holds once its files are written (no manifest yet) until the test releases it
    faults_dir = tmp_path / "faults"
    env = project_env(home, data, drift_warehouse, **pg_env, REFRESH_ASSETS_EXECUTOR="in_process",
                      REFRESH_ASSETS_FAULT_POINT=PAUSE_POINT, REFRESH_ASSETS_FAULT_ACTION="pause",
                      REFRESH_ASSETS_FAULT_DIR=str(faults_dir))
    with dagster_processes(env, tmp_path / "logs") as port:
        refresh = trigger.launch(HOST, port, "refresh_job", PARTITION, LIGHT_RUN_CONFIG)
        wait_for(lambda: (faults_dir / f"{PAUSE_POINT}.reached").exists(), timeout=300, interval=0.5,
                 what="the refresh's dataset step to reach its pause point")
        assert _status(port, refresh) == "STARTED"
        cluster.restart()  # every connection of the webserver and the daemon is dropped; pg_ctl waits for it back
        (faults_dir / f"{PAUSE_POINT}.release").touch()

        wait_for(lambda: _status(port, refresh) is not None, timeout=60, what="the webserver to answer again")
        wait_for(lambda: _status(port, refresh) in trigger.TERMINAL_STATUSES, timeout=600, interval=2,
                 what="the refresh to end")

        for key, value in pg_env.items():  # this process reads the same instance (dagster.yaml takes the env)
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            def refresh_runs():
                return instance.get_runs(dg.RunsFilter(job_name="refresh_job"))

            # The run rides out the restart (or, had it failed on it outside a step, run_retries in dagster.yaml
            # would have retried it); either way exactly one attempt chain, ending in success.
            def chain_ended():
                runs = refresh_runs()
                return all(r.status.value in trigger.TERMINAL_STATUSES for r in runs) and \
                    any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            wait_for(chain_ended, timeout=600, interval=2, what="the refresh (or its retry) to succeed")
            runs = refresh_runs()
            roots = {r.tags.get("dagster/root_run_id", r.run_id) for r in runs}
            assert roots == {refresh}, f"refresh runs not all from the one launch: {[(r.run_id, r.tags) for r in runs]}"
            assert sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs) == 1

            # The daemon's promotion sensor still works after the restart: one propagation run, not two.
            def propagated():
                runs = instance.get_runs(dg.RunsFilter(job_name="propagation_job"))
                return runs and all(r.status.value in trigger.TERMINAL_STATUSES for r in runs)
            wait_for(propagated, timeout=300, interval=2, what="the daemon to launch and finish the propagation")
            propagation = instance.get_runs(dg.RunsFilter(job_name="propagation_job"))
            assert len(propagation) == 1 and propagation[0].status == dg.DagsterRunStatus.SUCCESS
            assert propagation[0].tags["dagster/partition"] == PARTITION

        registry = ModelRegistry(data / "registry")
        assert [e.action for e in registry.events()] == ["promote"]
        assert registry.current_champion().version == 1
