"""Start real `dagster-webserver` / `dagster-daemon` processes for a test, and wait on what they do."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_instance_yaml(home: Path, storage: dict | None = None, **overrides) -> Path:
    """The repo's production dagster.yaml, with another storage block (e.g. SQLite) when given."""
    config = yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())
    if storage is None:
        config.pop("storage")
    else:
        config["storage"] = storage
    config.update(overrides)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def project_env(home: Path, data_dir: Path, warehouse: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "REFRESH_ASSETS_DATA_DIR": str(data_dir),
           "REFRESH_ASSETS_WAREHOUSE": str(warehouse), "REFRESH_ASSETS_COMPUTE_LOG_DIR": str(data_dir / "compute_logs"),
           "REFRESH_ASSETS_SENSOR_INTERVAL_SECONDS": "3", "REFRESH_ASSETS_RETRY_MAX": "0",
           "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


@contextmanager
def dagster_processes(env: dict[str, str], log_dir: Path, webserver: bool = True, daemon: bool = True):
    """Yield the webserver's port (or None); both processes are stopped afterwards, logs kept in log_dir."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    port = free_port() if webserver else None
    try:
        if webserver:
            procs.append(_start([str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"),
                                 "-h", "127.0.0.1", "-p", str(port)], env, log_dir / "webserver.log"))
            wait_http(f"http://127.0.0.1:{port}/server_info", timeout=120, proc=procs[-1],
                      log=log_dir / "webserver.log")
        if daemon:
            procs.append(_start([str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], env,
                                log_dir / "daemon.log"))
        yield port
    finally:
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            # what the process started and left behind (its code server, a run worker) goes with it: a code
            # server whose parent died was seen to outlive the test by half an hour
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "ab")
    # a process group of its own, so that teardown reaches every process it started
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the whole group is gone already
        pass


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {url} answered:\n"
                               + (log.read_text()[-3000:] if log else ""))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def post_graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """POST one GraphQL request to the webserver on 127.0.0.1:port; the whole JSON answer."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@contextmanager
def production_server(root: Path, warehouse: Path, pg: dict[str, str], end_timeout: float = 300, **extra: str):
    """The repo's production dagster.yaml (unchanged) on the PostgreSQL settings ``pg`` (REFRESH_ASSETS_PG_*),
    a webserver and a daemon on it, and this process's instance on the same database. Yields (port, instance,
    data folder, env); every run must have ended by teardown (``end_every_run``). Logs stay in root/logs."""
    import shutil

    import dagster as dg
    import pytest

    home, data = root / "home", root / "data"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    env = project_env(home, data, warehouse, **pg, **extra)
    with pytest.MonkeyPatch.context() as mp:
        # this process reads the same instance: dagster.yaml takes the connection from the environment
        for key in (*pg, "REFRESH_ASSETS_COMPUTE_LOG_DIR"):
            mp.setenv(key, env[key])
        with dg.DagsterInstance.from_config(str(home)) as instance, \
                dagster_processes(env, root / "logs") as port:
            yield port, instance, data, env
            end_every_run(instance, port, root / "logs", timeout=end_timeout)
    print(f"\nprocess logs: {root / 'logs'}")


REPOSITORY = {"repositoryLocationName": "refresh_assets", "repositoryName": "__repository__"}
START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
  }
}"""
STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""
SCHEDULE_STATE = """
query ScheduleState($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { id status ticks(limit: 20) { status timestamp runIds } } }
    ... on PythonError { message }
  }
}"""


SENSOR_STATE = """
query SensorState($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { id status } }
    ... on PythonError { message }
  }
}"""
STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}"""


def stop_sensor(port: int, sensor: str) -> None:
    """Turn a sensor off over GraphQL (as the UI's toggle does), e.g. one whose runs a test does not test."""
    found = post_graphql(port, SENSOR_STATE, {"selector": {**REPOSITORY, "sensorName": sensor}})
    stopped = post_graphql(port, STOP_SENSOR, {"id": found["data"]["sensorOrError"]["sensorState"]["id"]})
    assert stopped["data"]["stopSensor"]["instigationState"]["status"] == "STOPPED", stopped


def yesterday_utc(margin_seconds: float = 180) -> dt.date:
    """The partition a schedule requests: yesterday (UTC). Not within ``margin_seconds`` of midnight (waits past
    it), when a test's launch and the schedule's tick could fall on different days."""
    now = dt.datetime.now(dt.timezone.utc)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (midnight - now).total_seconds() < margin_seconds:
        time.sleep((midnight - now).total_seconds() + 5)
    return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def schedule_state(port: int, schedule: str) -> dict:
    answer = post_graphql(port, SCHEDULE_STATE, {"selector": {**REPOSITORY, "scheduleName": schedule}})
    found = answer["data"]["scheduleOrError"]
    assert found["__typename"] == "Schedule", found
    return found["scheduleState"]


def start_schedule(port: int, schedule: str) -> str:
    """Turn a schedule on over GraphQL (as the UI's toggle does); its state id."""
    started = post_graphql(port, START_SCHEDULE, {"selector": {**REPOSITORY, "scheduleName": schedule}})
    started = started["data"]["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    return started["scheduleState"]["id"]


def stop_schedule(port: int, schedule: str, state_id: str) -> None:
    """Stop a schedule, and again until it stays stopped. Right after a tick has submitted its runs the daemon
    writes the schedule's state back as it read it before the tick, RUNNING (dagster 1.13,
    dagster/_scheduler/scheduler.py, ``_write_and_get_next_checkpoint_timestamp``): a stop landing in that moment
    is undone, and the schedule went on ticking every minute (seen in test_daily_loop_daemon)."""
    for _ in range(10):
        stopped = post_graphql(port, STOP_SCHEDULE, {"id": state_id})
        assert stopped["data"]["stopRunningSchedule"]["scheduleState"]["status"] == "STOPPED", stopped
        time.sleep(3)
        if schedule_state(port, schedule)["status"] == "STOPPED":
            return
    raise AssertionError(f"{schedule} does not stay stopped")


def _in_flight(instance) -> list:
    from refresh_assets import trigger

    return [r for r in instance.get_run_records() if r.dagster_run.status.value not in trigger.TERMINAL_STATUSES]


def describe_runs(instance, records, log_dir: Path | None = None, events: int = 6) -> str:
    """One line per run, for a CI log: job, partition, status, age, its last events, and the daemon log's
    lines that name it (the daemon launches, monitors and retries runs)."""
    daemon_log = (log_dir / "daemon.log") if log_dir else None
    daemon_lines = daemon_log.read_text(errors="replace").splitlines() if daemon_log and daemon_log.exists() else []
    now = time.time()
    parts = []
    for record in records:
        run = record.dagster_run
        last = [f"{e.dagster_event.event_type_value if e.dagster_event else 'log'}: {e.message[:160]}"
                for e in instance.all_logs(run.run_id)[-events:]]
        mentions = [line[-200:] for line in daemon_lines if run.run_id in line][-3:]
        parts.append(f"run {run.run_id[:8]} {run.job_name} {run.tags.get('dagster/partition', '')} {run.status.value}, "
                     f"created {now - record.create_timestamp.timestamp():.0f}s ago; last events: {last}; "
                     f"daemon log: {mentions}")
    return " | ".join(parts)


def end_every_run(instance, port: int, log_dir: Path, timeout: float) -> None:
    """Teardown of a module's webserver and daemon: no run may outlive them (a promotion chains a propagation
    run). Waits until every run of the instance has ended. Runs still in flight after ``timeout`` are described
    (so that the CI log says what held them), force-canceled, and reported as a TimeoutError."""
    from refresh_assets import trigger

    try:
        wait_for(lambda: not _in_flight(instance), timeout=timeout, interval=2, what="every run to end")
        return
    except TimeoutError:
        left = _in_flight(instance)
        if not left:
            return
        report = describe_runs(instance, left, log_dir)
        for record in left:
            try:
                trigger.cancel("127.0.0.1", port, record.dagster_run.run_id, force=True)
            except trigger.TriggerError:  # it ended meanwhile
                pass
        raise TimeoutError(f"{len(left)} run(s) still in flight {timeout:g}s after the tests ended: {report}") from None
