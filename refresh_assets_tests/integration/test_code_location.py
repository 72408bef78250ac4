"""The code location loads fast (no sklearn, no evidently at import), and Dagster's own commands work in the repo
root with nothing set: `dagster definitions validate -w workspace.yaml` passes and `dagster dev` serves the UI."""

import os
import signal
import subprocess
import sys

import pytest

from refresh_assets_tests.integration.dagster_processes import BIN, REPO, free_port, post_graphql, wait_for, wait_http

pytestmark = pytest.mark.integration


def test_loading_the_code_location_imports_no_heavy_library():
    code = ("import sys, refresh_assets.definitions; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'evidently', 'skops', 'plotly', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def bare_env() -> dict[str, str]:
    """A fresh shell's environment: no DAGSTER_HOME and no REFRESH_ASSETS_* variable (what a new user has)."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def test_dagster_definitions_validate_in_the_root_with_no_setting():
    result = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=REPO, env=bare_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_dagster_dev_in_the_root_serves_the_ui_with_no_setting(tmp_path):
    """`dagster dev` as a Dagster user types it: the top-level dagster.yaml on a temporary embedded instance, the
    code location loaded (jobs listed over GraphQL), and the temporary instance gone after Ctrl-C."""
    port = free_port()
    before = set(REPO.glob(".tmp_dagster_home_*"))
    log = tmp_path / "dagster_dev.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                                env=bare_env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/server_info", timeout=300, proc=proc, log=log)

        def jobs():
            answer = post_graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { "
                                        "jobs { name } } } } }")
            nodes = (answer.get("data") or {}).get("repositoriesOrError", {}).get("nodes") or []
            return {job["name"] for node in nodes for job in node["jobs"]}

        names = wait_for(jobs, timeout=300, interval=2, what="the code location to load in dagster dev")
        assert {"refresh_job", "scoring_job", "propagation_job", "rollback_job"} <= names
        assert len(set(REPO.glob(".tmp_dagster_home_*")) - before) == 1  # Dagster's temporary instance
    finally:
        served_bytes = log.stat().st_size  # what dagster dev logged while serving, before the Ctrl-C
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raw = log.read_bytes()
    text = raw.decode(errors="replace")
    assert "REFRESH_ASSETS_PG" not in text, text[-3000:]
    served = raw[:served_bytes].decode(errors="replace")
    assert "Traceback" not in served, served[-3000:]
    # After the Ctrl-C, dagster dev (1.13.27) can stop the code server while its daemon is inside a sensor tick; the
    # tick then logs "Unable to reach the user code server" (DagsterUserCodeUnreachableError, gRPC UNAVAILABLE) with
    # its traceback. Seen once under make test's load (2026-12-04); any other traceback at shutdown still fails.
    shutdown_tracebacks = raw[served_bytes:].decode(errors="replace").split("Traceback (most recent call last):")[1:]
    assert all("UNAVAILABLE" in t or "DagsterUserCodeUnreachableError" in t for t in shutdown_tracebacks), text[-3000:]
    assert set(REPO.glob(".tmp_dagster_home_*")) - before == set()
