"""`refresh-assets serve` (what `make serve` runs) binds the webserver, and the reports server beside it, to the
loopback address unless told otherwise: Dagster OSS has no login, so nothing else on the network may reach it by
default."""

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from refresh_assets_tests.integration.dagster_processes import REPO, free_port, wait_http
from refresh_assets_tests.integration.test_postgres_ops import PG, drop_database

pytestmark = pytest.mark.integration

BIN = Path(os.sys.executable).parent


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port``, read from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_serve_binds_the_webserver_to_loopback_by_default(tmp_path):
    port = free_port()
    database = f"refresh_assets_test_{uuid.uuid4().hex[:12]}"
    env = {**os.environ, **PG, "REFRESH_ASSETS_PG_DB": database, "REFRESH_ASSETS_DATA_DIR": str(tmp_path),
           "REFRESH_ASSETS_WAREHOUSE": str(tmp_path / "raw.duckdb"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "serve.log", "wb")
    reports_port = free_port()
    proc = subprocess.Popen([str(BIN / "refresh-assets"), "serve", "--port", str(port),
                             "--reports-port", str(reports_port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/server_info", timeout=120, proc=proc, log=tmp_path / "serve.log")
        addresses = listening_addresses(port)
        # 0100007F = 127.0.0.1 (little-endian hex); 00000000 would be 0.0.0.0, i.e. every interface
        assert addresses == {"0100007F"}, f"webserver listens on {addresses}"
        # the reports server the UI's report links point at runs beside it, on loopback too
        wait_http(f"http://127.0.0.1:{reports_port}/healthz", timeout=60, proc=proc, log=tmp_path / "serve.log")
        assert listening_addresses(reports_port) == {"0100007F"}
        # on the production instance: a copy of deploy/postgres/dagster.yaml under the data folder, whose
        # PostgreSQL database serve created (the top-level dagster.yaml is the embedded one of `dagster dev`)
        home = tmp_path / "dagster_home_postgres"
        assert (home / "dagster.yaml").read_text() == (REPO / "deploy" / "postgres" / "dagster.yaml").read_text()
        assert f"instance {home}/dagster.yaml (PostgreSQL" in (tmp_path / "serve.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        drop_database(database)
