"""Start real `dagster-webserver` / `dagster-daemon` processes for a test, and wait on what they do."""

from __future__ import annotations

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
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
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
