"""The production instance (the repo's dagster.yaml, unchanged) on a real PostgreSQL, run by a real
dagster-webserver + dagster-daemon.

One webserver/daemon pair serves the whole module, on a database this module creates
(``refresh_assets_test_<random>``) and drops at the end. The processes get the connection from
REFRESH_ASSETS_PG_* exactly as production does, and the module reads the same database through a
``DagsterInstance`` built from the same file.

* schedules and sensors are listed over GraphQL: sensors RUNNING by default, schedules STOPPED;
* a refresh of D launched over GraphQL with overridden inputs succeeds, and the overrides are in the manifest
  of D's model_comparison output (``current.json`` -> run folder -> ``manifest.json``);
* two refreshes of the same D launched back to back are run one after the other by the run queue;
* with the warehouse file write-locked by another process, ``training_dataset`` asks for a step retry
  (``RetryRequested``) until the lock is gone, and the run succeeds (the lock is released right after the
  second retry request, so the step fails exactly twice, then succeeds);
* a failing run is alerted once in the alert file and once at the webhook (a local HTTP server), with its
  job, partition, run id and failing step; run_retries re-executes it once and the retry fails too. That
  one failed launch still gives exactly one alert: failure_alert_sensor skips the attempt tagged
  dagster/will_retry=true.
* the run worker of a refresh (and its step processes) SIGKILLed during training: the run ends FAILURE, the
  champion is untouched, and run_retries' re-execution succeeds;
* two refreshes of one partition never register two champions;
* the PostgreSQL password and Slack token (planted in the processes' environment) and the webhook URL are in
  no process log, compute log, manifest, alert record or event log message.

Runs use LIGHT_RUN_CONFIG (conftest): every refresh_job run is serialized by the
queue (``refresh_assets/kind=refresh``), so the module's time is the sum of its ~6 refreshes on 2 cores.

Needs PostgreSQL at REFRESH_ASSETS_PG_HOST:PORT (default 127.0.0.1:5432) with a user allowed to create
databases (REFRESH_ASSETS_PG_USER, default postgres; REFRESH_ASSETS_PG_PASSWORD, default empty); the module is
failed (not skipped) when it cannot connect.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from refresh_assets import trigger
from refresh_assets.cli import run_config_from_sets
from refresh_assets.local_runs import deep_merge
from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG
from refresh_assets_tests.integration.dagster_processes import (
    REPO,
    dagster_processes,
    end_every_run,
    post_graphql,
    project_env,
    wait_for,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
RUN_TIMEOUT = 420
OVERRIDDEN = "2026-04-06"  # test 1: a refresh with overridden inputs
QUEUED_TWICE = "2026-04-13"  # test 2: two refreshes of the same partition
LOCKED = "2026-04-20"  # test 3: a refresh while the warehouse file is locked
CANCELED = "2026-04-27"  # a refresh canceled while it runs
KILLED = "2026-05-04"  # a refresh whose run worker is SIGKILLed during training
EMPTY = "2025-01-01"  # test 4: the first partition, before the warehouse's first day: the dataset checks fail
OVERRIDES = ["random_seed=7", "min_improvement=0.001"]
#: How many times the dataset step is made to fail (the lock is released after that many retry requests).
LOCKED_ATTEMPTS = 2

PG = {
    "REFRESH_ASSETS_PG_HOST": os.environ.get("REFRESH_ASSETS_PG_HOST", "127.0.0.1"),
    "REFRESH_ASSETS_PG_PORT": os.environ.get("REFRESH_ASSETS_PG_PORT", "5432"),
    "REFRESH_ASSETS_PG_USER": os.environ.get("REFRESH_ASSETS_PG_USER", "postgres"),
    "REFRESH_ASSETS_PG_PASSWORD": os.environ.get("REFRESH_ASSETS_PG_PASSWORD", ""),
}
ADMIN_DB = os.environ.get("REFRESH_ASSETS_PG_ADMIN_DB", "postgres")
#: Secrets the processes get from the environment and must never write anywhere. The shared server trusts
#: local connections, so a planted password still connects; a real one (set by the caller) is scanned for.
PLANTED_SECRETS = {
    "REFRESH_ASSETS_PG_PASSWORD": PG["REFRESH_ASSETS_PG_PASSWORD"] or "planted-pg-pw-7f3a9c1e",
    "REFRESH_ASSETS_SLACK_TOKEN": "xoxb-000000000000-planted0slack0token",  # no channel: never posted
}

# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def pg_connect(db_name: str):
    import psycopg2

    con = psycopg2.connect(host=PG["REFRESH_ASSETS_PG_HOST"], port=int(PG["REFRESH_ASSETS_PG_PORT"]),
                           user=PG["REFRESH_ASSETS_PG_USER"], password=PG["REFRESH_ASSETS_PG_PASSWORD"],
                           dbname=db_name, connect_timeout=5)
    con.autocommit = True
    return con


def drop_database(name: str) -> None:
    con = pg_connect(ADMIN_DB)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        con.close()


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    answer = post_graphql(port, query, variables)
    assert not answer.get("errors"), answer
    return answer["data"]


class Webhook:
    """A local HTTP server (thread) that answers 200 to every POST and records it."""

    def __init__(self):
        self.requests: list[dict] = []
        lock = threading.Lock()
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                     "body": json.loads(body or b"null")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hooks/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# A second process holding the warehouse open read-write: DuckDB takes an exclusive lock on the file, so
# the dataset step's read-only connection fails with "Could not set lock on file" (an IOException, transient)
# until the holder is told to let go (a line on stdin, or stdin closed if the test dies).
LOCK_HOLDER = r"""
import select, sys
import duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SELECT count(*) FROM players").fetchone()
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))
con.close()
print("released", flush=True)
"""


class Env:
    """What the tests share: the webserver port, the data folder, the instance, the webhook."""

    def __init__(self, port, data, instance, webhook, db_name, alert_file, root):
        self.port, self.data, self.instance, self.webhook = port, data, instance, webhook
        self.db_name, self.alert_file, self.root = db_name, alert_file, root

    def launch(self, job: str, partition: str, run_config: dict, **tags) -> str:
        return trigger.launch(HOST, self.port, job, partition, run_config, tags or None)

    def wait(self, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
        return trigger.wait(HOST, self.port, run_id, timeout=timeout, poll=1.0)

    def step_events(self, run_id: str, step_key: str) -> list[str]:
        """Event type names of one step of the run, in order, from the run's event log (PostgreSQL)."""
        return [e.dagster_event.event_type_value for e in self.instance.all_logs(run_id)
                if e.dagster_event is not None and e.dagster_event.step_key == step_key]

    def alerts(self) -> list[dict]:
        if not self.alert_file.exists():
            return []
        return [json.loads(line) for line in self.alert_file.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database():
    """A fresh database for this module (dropped at the end, leftover connections terminated first)."""
    try:
        con = pg_connect(ADMIN_DB)
    except Exception as error:  # no server here: these tests need one (.ci/run starts it)
        pytest.fail(f"PostgreSQL not reachable at {PG['REFRESH_ASSETS_PG_HOST']}:{PG['REFRESH_ASSETS_PG_PORT']}: "
                    f"{error}")
    name = f"refresh_assets_test_{uuid.uuid4().hex[:12]}"
    try:
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory, drift_warehouse, pg_database):
    root = tmp_path_factory.mktemp("postgres_ops")
    home, data = root / "home", root / "data"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")  # the production instance, unchanged
    alert_file = data / "alerts" / "alerts.jsonl"
    with Webhook() as webhook, pytest.MonkeyPatch.context() as mp:
        pg_env = {**PG, **PLANTED_SECRETS, "REFRESH_ASSETS_PG_DB": pg_database}
        env = project_env(
            home, data, drift_warehouse, **pg_env,
            REFRESH_ASSETS_RETRY_MAX="2", REFRESH_ASSETS_RETRY_DELAY_SECONDS="1",
            REFRESH_ASSETS_QUERY_RETRY_DELAY_SECONDS="3",
            REFRESH_ASSETS_ALERT_FILE=str(alert_file), REFRESH_ASSETS_ALERT_WEBHOOK_URL=webhook.url,
        )
        # this process reads the same instance: dagster.yaml takes the connection from the environment
        for key in (*PG, "REFRESH_ASSETS_PG_DB", "REFRESH_ASSETS_COMPUTE_LOG_DIR"):
            mp.setenv(key, env[key])
        with dg.DagsterInstance.from_config(str(home)) as instance, \
                dagster_processes(env, root / "logs") as port:
            yield Env(port, data, instance, webhook, pg_database, alert_file, root)
            end_every_run(instance, port, root / "logs", timeout=240)  # a promotion chains a propagation run
        print(f"\nprocess logs: {root / 'logs'}")


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------

REPOSITORY_QUERY = """
query Automation($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      name
      location { name }
      schedules { name pipelineName cronSchedule executionTimezone scheduleState { status } }
      sensors { name sensorType minIntervalSeconds targets { pipelineName } sensorState { status } }
    }
    ... on Error { message }
  }
}"""


def test_instance_is_the_production_postgres_one(server):
    """The processes and this module share the repo's dagster.yaml on the module's own database."""
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = server.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
    assert instance.run_monitoring_enabled

    def daemon_heartbeats():  # the daemon writes its heartbeats to the module's database
        con = pg_connect(server.db_name)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT daemon_type FROM daemon_heartbeats")
                return {row[0] for row in cur.fetchall()}
        finally:
            con.close()

    required = set(instance.get_required_daemon_types())
    # the queue, run monitoring and run retries of dagster.yaml each have their daemon
    assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"} <= required
    wait_for(lambda: required <= daemon_heartbeats(), timeout=60, interval=1,
             what=f"heartbeats of {sorted(required)} in PostgreSQL")


def test_schedules_and_sensors_listed_with_their_default_status(server):
    data = graphql(server.port, REPOSITORY_QUERY, {"selector": {
        "repositoryLocationName": "refresh_assets", "repositoryName": trigger.REPOSITORY_NAME}})
    repo = data["repositoryOrError"]
    assert repo["__typename"] == "Repository", repo
    assert repo["location"]["name"] == "refresh_assets"

    schedules = {s["name"]: s for s in repo["schedules"]}
    assert set(schedules) == {"weekly_refresh_schedule", "daily_scoring_schedule"}
    assert {n: s["scheduleState"]["status"] for n, s in schedules.items()} == {
        "weekly_refresh_schedule": "STOPPED", "daily_scoring_schedule": "STOPPED"}
    assert schedules["weekly_refresh_schedule"]["pipelineName"] == "refresh_job"
    assert schedules["weekly_refresh_schedule"]["cronSchedule"] == "0 4 * * 1"
    assert schedules["daily_scoring_schedule"]["pipelineName"] == "scoring_job"
    assert schedules["daily_scoring_schedule"]["cronSchedule"] == "0 6 * * *"
    assert {s["executionTimezone"] for s in schedules.values()} == {"UTC"}

    sensors = {s["name"]: s for s in repo["sensors"]}
    assert set(sensors) == {"promotion_sensor", "drift_sensor", "failure_alert_sensor", "candidate_failure_alert_sensor"}
    assert {n: s["sensorState"]["status"] for n, s in sensors.items()} == {
        "promotion_sensor": "RUNNING", "drift_sensor": "RUNNING", "failure_alert_sensor": "RUNNING",
        "candidate_failure_alert_sensor": "RUNNING"}
    assert sensors["failure_alert_sensor"]["sensorType"] == "RUN_STATUS"
    assert sensors["candidate_failure_alert_sensor"]["sensorType"] == "RUN_STATUS"
    assert [t["pipelineName"] for t in sensors["promotion_sensor"]["targets"]] == ["propagation_job"]
    assert [t["pipelineName"] for t in sensors["drift_sensor"]["targets"]] == ["refresh_job"]
    assert {s["minIntervalSeconds"] for s in sensors.values()} == {3}  # REFRESH_ASSETS_SENSOR_INTERVAL_SECONDS


def test_refresh_over_graphql_with_overrides(server):
    overrides, _ = run_config_from_sets(OVERRIDES)
    t0 = time.perf_counter()
    run_id = server.launch("refresh_job", OVERRIDDEN, deep_merge(LIGHT_RUN_CONFIG, overrides),
                           **{"refresh_assets/trigger": "test"})
    status = server.wait(run_id)
    print(f"\nrefresh {OVERRIDDEN} over GraphQL on PostgreSQL: {status} in {time.perf_counter() - t0:.0f}s")
    assert status == "SUCCESS"

    run = server.instance.get_run_by_id(run_id)
    assert run.job_name == "refresh_job"
    assert run.tags["dagster/partition"] == OVERRIDDEN
    assert run.tags["refresh_assets/kind"] == "refresh"
    con = pg_connect(server.db_name)  # stored in the module's database, not anywhere else
    try:
        with con.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchone() == ("SUCCESS",)
    finally:
        con.close()

    partition_dir = server.data / "outputs" / "model_comparison" / OVERRIDDEN
    pointer = json.loads((partition_dir / "current.json").read_text())
    manifest = json.loads((partition_dir / pointer["run_dir"] / "manifest.json").read_text())
    assert manifest["run_id"] == run_id and manifest["partition"] == OVERRIDDEN
    assert manifest["config"]["min_improvement"] == 0.001
    assert manifest["config"]["random_seed"] == 7
    assert manifest["config"]["bootstrap_samples"] == 200  # the rest of the run config kept beside the overrides


def test_refreshes_of_one_partition_are_queued_one_after_the_other(server):
    first = server.launch("refresh_job", QUEUED_TWICE, LIGHT_RUN_CONFIG)
    second = server.launch("refresh_job", QUEUED_TWICE, LIGHT_RUN_CONFIG)
    t0 = time.perf_counter()
    assert server.wait(first) == "SUCCESS"
    assert server.wait(second) == "SUCCESS"
    print(f"\ntwo refreshes of {QUEUED_TWICE}: both SUCCESS in {time.perf_counter() - t0:.0f}s")

    records = {r.dagster_run.run_id: r for r in server.instance.get_run_records(
        dg.RunsFilter(run_ids=[first, second]))}
    a, b = sorted(records.values(), key=lambda r: r.start_time)
    assert a.dagster_run.run_id == first  # the queue is first in, first out
    assert a.end_time is not None and b.start_time is not None
    assert b.start_time >= a.end_time, (
        f"the second refresh started {a.end_time - b.start_time:.1f}s before the first ended")
    # the same from the event log: the second left the queue only after the first had ended
    stats = {run_id: server.instance.get_run_stats(run_id) for run_id in (first, second)}
    assert stats[second].launch_time >= stats[first].end_time
    assert stats[second].start_time >= stats[first].end_time
    # the registry never holds two champions: one current version, and no model registered twice (the second
    # refresh compared with the champion the first left, it did not promote the same model again)
    from refresh_assets.core.registry import ModelRegistry

    registry = ModelRegistry(server.data / "registry")
    versions = registry.versions()
    assert len({v.model_sha256 for v in versions}) == len(versions)
    promotions = [e for e in registry.events() if e.run_id in (first, second) and e.action == "promote"]
    assert len(promotions) <= 1, promotions
    assert registry.current_champion().version == registry.events()[-1].version


def test_cancel_a_running_refresh_leaves_the_champion_untouched(server):
    from refresh_assets.core.artifacts import OutputStore
    from refresh_assets.core.registry import ModelRegistry

    registry = ModelRegistry(server.data / "registry")
    before = registry.current_champion()
    assert before is not None  # the earlier refreshes of this module promoted one
    run_id = server.launch("refresh_job", CANCELED, LIGHT_RUN_CONFIG)
    wait_for(lambda: trigger.status(HOST, server.port, run_id) in ("STARTED", *trigger.TERMINAL_STATUSES),
             timeout=300, interval=0.5, what="the refresh to start")
    assert trigger.status(HOST, server.port, run_id) == "STARTED"
    trigger.cancel(HOST, server.port, run_id)
    assert trigger.wait(HOST, server.port, run_id, timeout=180, poll=0.5) == "CANCELED"
    after = registry.current_champion()
    assert (after.version, after.model_sha256) == (before.version, before.model_sha256)
    assert not any(e.run_id == run_id for e in registry.events())
    assert OutputStore(server.data / "outputs").current("champion_model", CANCELED) is None


def test_locked_warehouse_is_retried_until_free(server, drift_warehouse):
    # nothing else may hold the warehouse open: wait for every earlier refresh to end
    wait_for(lambda: not server.instance.get_run_records(dg.RunsFilter(
        job_name="refresh_job", statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                          dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])),
             timeout=RUN_TIMEOUT, interval=1, what="earlier refreshes to end")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(drift_warehouse), "300"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        run_id = server.launch("refresh_job", LOCKED, LIGHT_RUN_CONFIG)

        def retries_requested():
            events = server.step_events(run_id, "training_dataset")
            if "STEP_SUCCESS" in events or "STEP_FAILURE" in events:
                return events  # too late to count exactly: the assertions below say what happened
            return events if events.count("STEP_UP_FOR_RETRY") >= LOCKED_ATTEMPTS else None

        wait_for(retries_requested, timeout=240, interval=0.2, what=f"{LOCKED_ATTEMPTS} step retry requests")
        held = time.perf_counter() - t0
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(timeout=30)

    status = server.wait(run_id)
    events = server.step_events(run_id, "training_dataset")
    retries = events.count("STEP_UP_FOR_RETRY")
    print(f"\nlocked warehouse: lock held {held:.0f}s, training_dataset retried {retries} time(s), run {status} "
          f"in {time.perf_counter() - t0:.0f}s; step events: {events}")
    assert status == "SUCCESS"
    assert retries >= 1
    assert retries == LOCKED_ATTEMPTS  # the lock went away right after the second retry request
    assert events.count("STEP_RESTARTED") == retries
    assert events.count("STEP_START") == 1 and events[-1] == "STEP_SUCCESS"
    assert "STEP_FAILURE" not in events
    # the reason is in the step's log: a lock, not a query error
    messages = [e.user_message for e in server.instance.all_logs(run_id)
                if e.step_key == "training_dataset" and "transient warehouse error" in (e.user_message or "")]
    assert len(messages) == retries and all("lock" in m.lower() for m in messages)

    # the webserver reads the same event log from PostgreSQL
    answer = graphql(server.port, """
      query Events($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status
        eventConnection(limit: 10000) { events { __typename ... on StepEvent { stepKey } } } } } }""",
                     {"runId": run_id})
    run = answer["runOrError"]
    assert run["status"] == "SUCCESS"
    kinds = [e["__typename"] for e in run["eventConnection"]["events"] if e.get("stepKey") == "training_dataset"]
    assert kinds.count("ExecutionStepUpForRetryEvent") == retries
    assert kinds.count("ExecutionStepRestartEvent") == retries


@pytest.fixture(scope="module")
def failed_launch(server, drift_warehouse):
    """One launch of a refresh that fails in a step (a dataset rule), which run_retries does not re-execute
    (retry_on_asset_or_op_failure: false), and the alerts."""
    import duckdb

    with duckdb.connect(str(drift_warehouse), read_only=True) as con:
        first_day = con.execute("SELECT min(install_date) FROM players").fetchone()[0]
    assert first_day.isoformat() > EMPTY, f"the warehouse starts {first_day}: partition {EMPTY} is not empty"

    t0 = time.perf_counter()
    run_id = server.launch("refresh_job", EMPTY, LIGHT_RUN_CONFIG)
    assert server.wait(run_id) == "FAILURE"
    # the blocking dataset checks refuse the empty dataset; a data rule fails the same way every time, so the
    # step RetryPolicy (REFRESH_ASSETS_RETRY_MAX=2) does not retry it (Failure(allow_retries=False))
    events = server.step_events(run_id, "training_dataset_checks")
    assert "STEP_UP_FOR_RETRY" not in events and events[-1] == "STEP_FAILURE", events
    assert "STEP_START" not in server.step_events(run_id, "candidate_logreg")  # blocked: planned, never started

    # run_retries (max_retries: 1) re-executes a run whose worker died, not one that failed in a step: the run
    # is tagged dagster/will_retry=false and nothing follows it
    def chain_ended():
        runs = [server.instance.get_run_by_id(run_id), *server.instance.get_runs(
            dg.RunsFilter(tags={"dagster/root_run_id": run_id}), ascending=True)]
        last = runs[-1]
        done = (all(r.status.value in trigger.TERMINAL_STATUSES for r in runs)
                and last.tags.get("dagster/will_retry") == "false")
        return runs if done else None

    runs = wait_for(chain_ended, timeout=RUN_TIMEOUT, interval=1, what="the failed run's will_retry tag")
    chain = [r.run_id for r in runs]
    final = chain[-1]

    def final_alerted():
        return any(a["run_id"] == final for a in server.alerts())

    wait_for(final_alerted, timeout=120, interval=1, what="the alert of the last failed run")
    time.sleep(12)  # several more ticks of the sensor (3 s apart): nothing more may come
    alerts = [a for a in server.alerts() if a["partition"] == EMPTY]
    hooks = [h for h in server.webhook.requests if h["body"].get("partition") == EMPTY]
    summary = [(r.run_id[:8], r.status.value, f"will_retry={r.tags.get('dagster/will_retry')}") for r in runs]
    print(f"\nfailed launch of {EMPTY}: runs {summary} in {time.perf_counter() - t0:.0f}s; alert records {len(alerts)} "
          f"({[a['run_id'][:8] for a in alerts]}), webhook requests {len(hooks)}")
    return {"launched": run_id, "chain": chain, "final": final, "runs": runs, "alerts": alerts, "hooks": hooks}


def test_failed_run_alerts_once(server, failed_launch):
    chain, final = failed_launch["chain"], failed_launch["final"]
    alerts, hooks = failed_launch["alerts"], failed_launch["hooks"]
    assert len(chain) == 1, chain  # a dataset rule fails the same way again: the run is not re-executed
    assert failed_launch["runs"][0].tags["dagster/will_retry"] == "false"
    assert all(r.status == dg.DagsterRunStatus.FAILURE for r in failed_launch["runs"])

    # every alert is for a failed run of this launch, and no run is alerted twice, in the file or at the webhook
    assert {a["run_id"] for a in alerts} <= set(chain)
    assert len({a["run_id"] for a in alerts}) == len(alerts), alerts
    assert sorted(h["body"]["run_id"] for h in hooks) == sorted(a["run_id"] for a in alerts)

    # the final failure (nothing retries it any more) is alerted exactly once, in the file and at the webhook
    (record,) = [a for a in alerts if a["run_id"] == final]
    assert record["job"] == "refresh_job" and record["partition"] == EMPTY
    assert record["failing_step"] == "training_dataset_checks"
    assert f"training_dataset for {EMPTY} refused by" in record["error"]
    assert "row_counts: train has 0 rows, fewer than the minimum 200" in record["error"]
    assert record["link"].endswith(f"/runs/{final}")
    (hook,) = [h for h in hooks if h["body"]["run_id"] == final]
    assert hook["path"] == "/hooks/alerts" and hook["content_type"] == "application/json"
    assert {k: hook["body"][k] for k in ("job", "partition", "run_id", "failing_step", "error")} == {
        k: record[k] for k in ("job", "partition", "run_id", "failing_step", "error")}
    assert "refresh_job" in hook["body"]["text"] and final in hook["body"]["text"]


def test_a_failed_launch_is_alerted_once(failed_launch):
    alerts, hooks = failed_launch["alerts"], failed_launch["hooks"]
    assert len(alerts) == 1, f"{len(alerts)} alert records for one failed launch: {alerts}"
    assert len(hooks) == 1, f"{len(hooks)} webhook requests for one failed launch"
    assert alerts[0]["run_id"] == failed_launch["final"]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _run_worker_pid(instance, run_id: str) -> int | None:
    """The run worker's pid, from the multiprocess executor's own engine event ('parent process (pid: N)')."""
    import re

    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"parent process \(pid: (\d+)\)", entry.user_message or "")
        if found:
            return int(found.group(1))
    return None


def test_a_run_killed_with_sigkill_ends_failed_and_its_retry_succeeds(server):
    """SIGKILL of the run worker and its step processes mid-training: the run ends FAILURE, not STARTED forever
    (measured: the code server that launched it reports the dead process within seconds, before run
    monitoring's first 20 s poll; monitoring is the backstop when the code server itself is gone), nothing it
    had not committed is visible, the champion is untouched, and run_retries' re-execution succeeds."""
    from refresh_assets.core.artifacts import OutputStore
    from refresh_assets.core.registry import ModelRegistry

    wait_for(lambda: not server.instance.get_run_records(dg.RunsFilter(
        job_name="refresh_job", statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                          dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])),
             timeout=RUN_TIMEOUT, interval=1, what="earlier refreshes to end")
    registry = ModelRegistry(server.data / "registry")
    store = OutputStore(server.data / "outputs")

    def registry_state():
        champion = registry.current_champion()
        return champion.to_dict() if champion else None, [e.to_dict() for e in registry.events()]

    before = registry_state()
    run_id = server.launch("refresh_job", KILLED, LIGHT_RUN_CONFIG)
    wait_for(lambda: "STEP_START" in server.step_events(run_id, "candidate_logreg") or None,
             timeout=RUN_TIMEOUT, interval=0.2, what="training to start")
    worker = _run_worker_pid(server.instance, run_id)
    assert worker is not None, "no process executing the run"
    for pid in [worker, *_descendants(worker)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t0 = time.perf_counter()
    assert server.wait(run_id, timeout=240) == "FAILURE"
    detected = time.perf_counter() - t0
    assert registry_state() == before
    for asset in ("model_comparison", "champion_model"):
        assert store.current(asset, KILLED) is None
    # run_retries re-executes the killed run; that run succeeds
    def retried():
        runs = server.instance.get_runs(dg.RunsFilter(tags={"dagster/root_run_id": run_id}))
        return runs if runs and all(r.status.value in trigger.TERMINAL_STATUSES for r in runs) else None

    (retry,) = wait_for(retried, timeout=RUN_TIMEOUT, interval=1, what="the retry of the killed run")
    why = [e.user_message for e in server.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    print(f"\nSIGKILL of run {run_id[:8]} during training: FAILURE after {detected:.0f}s ({why}); retry "
          f"{retry.run_id[:8]} {retry.status.value}")
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    assert store.current("champion_model", KILLED) is not None


def test_planted_secrets_appear_in_no_log_manifest_or_alert(server, failed_launch):
    """The PostgreSQL password, Slack token and webhook URL reach the processes only through the environment:
    none is in a process log, a compute log, a manifest, an alert record or the event log, after successful,
    failed, retried, canceled and killed runs."""
    secrets = [*PLANTED_SECRETS.values(), server.webhook.url]
    assert server.alerts(), "no alert was written: the scan would prove nothing about alert records"
    scanned = 0
    for path in [*server.root.rglob("*")]:
        if not path.is_file() or path.suffix in (".parquet", ".skops", ".duckdb", ".wal"):
            continue
        text = path.read_bytes().decode(errors="replace")
        scanned += 1
        for secret in secrets:
            assert secret not in text, f"{secret[:12]}... found in {path}"
    assert scanned > 20
    logs = [e.user_message or "" for run in server.instance.get_runs() for e in server.instance.all_logs(run.run_id)]
    assert logs and not [m for m in logs if any(secret in m for secret in secrets)]
