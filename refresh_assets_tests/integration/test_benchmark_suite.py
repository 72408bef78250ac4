"""Smoke run of the benchmark suite on tiny sizes so the scripts cannot rot (the figures are not checked:
at these sizes they mean nothing; ``make bench`` measures the targets)."""

import json
import math

import pytest

from refresh_assets_tests.benchmarks import suite

pytestmark = pytest.mark.integration

ROW_FIELDS = {"name", "value", "baseline", "ratio", "unit", "target", "met", "runs"}


# Every benchmark at its tiny size is still seven small refreshes (bench_refresh's three ways, daily scoring,
# backfill, scale): 2.5-4 min alone on 2 cores, 13-14 min beside make test's five other workers (2026-12-04), and
# 20+ min on a slower machine with three other workers (a local CI run on
# 2026-12-03 hit the 1,200 s default there, with bench_refresh's in-process refresh at 220 s instead of ~25 s).
@pytest.mark.timeout(2400)
def test_tiny_suite_writes_every_row(tmp_path):
    exit_code = suite.main(["--size", "tiny", "--out", str(tmp_path), "--docs", str(tmp_path / "BENCHMARKS.md")])
    result = json.loads((tmp_path / "results.json").read_text())
    failed = [(r["name"], r["notes"]) for r in result["rows"] if str(r.get("notes", "")).startswith("FAILED")]
    assert failed == [] and exit_code == 0
    assert [r["name"] for r in result["rows"]] == list(suite.ROW_ORDER)
    assert {"machine", "versions", "rows"} <= set(result)
    assert result["machine"]["cpus"] >= 1 and result["versions"]["dagster"].startswith("1.")
    for row in result["rows"]:
        assert ROW_FIELDS <= set(row), row["name"]
        assert isinstance(row["met"], bool) and row["runs"], row["name"]
        assert math.isfinite(row["value"]), row["name"]
        # code_location_load's value is a difference of two import times: under load it can come out <= 0
        assert row["value"] > 0 or row["name"] == "code_location_load", row["name"]
        if row["name"] != "refresh_peak_memory":
            assert row["baseline"] is not None and row["baseline"] > 0, row["name"]
            assert row["ratio"] is not None and row["ratio"] > 0, row["name"]
    by_name = {r["name"]: r for r in result["rows"]}
    # the refresh rows compare like with like: every mode promoted the same algorithm on the same data
    for run in by_name["refresh_inprocess"]["runs"]:
        assert run["promoted"] == run["script_promoted"]
    # every backfill partition tells its steps' time (from the event log) apart from Dagster's around them
    refresh_steps = {"training_dataset", "training_dataset_checks", "model_comparison", "champion_model"}
    for run in by_name["backfill_flatness"]["runs"]:
        assert refresh_steps <= set(run["step_seconds"]), run["partition"]
        assert all(seconds > 0 for seconds in run["step_seconds"].values()), run["partition"]
        assert 0 < run["around_steps_seconds"] < run["refresh_seconds"], run["partition"]
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert all(f"`{name}`" in table for name in suite.ROW_ORDER)
    # --render writes the same table again from results.json alone, without running anything
    rendered = tmp_path / "again.md"
    assert suite.main(["--render", "--out", str(tmp_path), "--docs", str(rendered)]) == 0
    assert rendered.read_text() == suite.markdown(result)
    assert all(f"`{name}`" in rendered.read_text() for name in suite.ROW_ORDER)
