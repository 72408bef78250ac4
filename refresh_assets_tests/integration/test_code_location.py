"""The code location loads fast (no sklearn, no evidently at import) and passes `dagster definitions validate`."""

import subprocess
import sys

import pytest

from refresh_assets_tests.integration.dagster_processes import BIN, REPO

pytestmark = pytest.mark.integration


def test_loading_the_code_location_imports_no_heavy_library():
    code = ("import sys, refresh_assets.definitions; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'evidently', 'skops', 'plotly', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dagster_definitions_validate(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path), "PATH": str(BIN)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
