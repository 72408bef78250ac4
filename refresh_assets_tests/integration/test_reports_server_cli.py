"""`refresh-assets reports` (what `make reports` runs) starts, serves the data dir's committed reports on the
loopback address only, and stops on SIGTERM."""

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from refresh_assets.core.artifacts import OutputStore
from refresh_assets.serving.reports import report_url
from refresh_assets_tests.integration.dagster_processes import free_port, wait_http
from refresh_assets_tests.integration.test_serve_binding import listening_addresses

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def test_the_reports_command_answers_healthz_and_serves_a_committed_report(tmp_path):
    store = OutputStore(tmp_path / "outputs")  # <data-dir>/outputs, where the assets write
    with store.stage("model_comparison", "2026-07-05", "run-1") as out:
        (out.path / "report.html").write_text("<html><script>var plot = 1;</script></html>", encoding="utf-8")
        out.add_file("report.html")
        final = out.commit({"promote": False})

    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in ("REFRESH_ASSETS_OUTPUTS", "REFRESH_ASSETS_REPORTS_URL")}
    env.update({"REFRESH_ASSETS_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "reports.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / "refresh-assets"), "reports", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120, proc=proc, log=log_path)
        url = report_url("model_comparison", "2026-07-05", final.name, base_url=f"http://127.0.0.1:{port}/")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
            assert response.read() == (final / "report.html").read_bytes()
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        first_line = log_path.read_text().splitlines()[0]
        assert first_line == (f"reports on http://127.0.0.1:{port}/ (outputs {tmp_path / 'outputs'}); "
                              "Ctrl-C stops it")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # a graceful shutdown; uvicorn (0.54) then re-raises the SIGTERM it caught, so the exit status is -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), log_path.read_text()[-2000:]
    assert "Application shutdown complete" in log_path.read_text()
