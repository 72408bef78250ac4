"""The daily loop on the user's path: `refresh-assets` commands in fresh processes, as the README tells a user.

A weekly refresh promotes v1; three following days without a refresh are scored by `refresh-assets score`
(each builds its own scoring population: no dataset of those days exists); a day after the simulated change
drifts, and the same command runs the drift-triggered refresh, which promotes v2 and re-scores the day; the next
day's persisting drift requests nothing; `refresh-assets rollback` brings v1 back and re-scores production with
it; a version that does not exist is refused in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG, PRE_DRIFT

pytestmark = pytest.mark.integration

QUIET_DAYS = ["2026-04-07", "2026-04-08", "2026-04-09"]
DRIFTED_DAYS = ["2026-06-01", "2026-06-02"]  # six weeks after the simulated change (conftest.DRIFT_DATE)


def light_sets() -> list[str]:
    ops = LIGHT_RUN_CONFIG["ops"]
    return [f"--set={k}={v}" for k, v in {**ops["candidate_logreg"]["config"],
                                          **ops["model_comparison"]["config"]}.items()]


@pytest.fixture(scope="module")
def cli(tmp_path_factory, drift_warehouse):
    data = tmp_path_factory.mktemp("daily_cli")
    env = {key: value for key, value in os.environ.items() if not key.startswith("DAGSTER_")}
    env.update({"REFRESH_ASSETS_WAREHOUSE": str(drift_warehouse), "REFRESH_ASSETS_RETRY_MAX": "0",
                "REFRESH_ASSETS_EXECUTOR": "in_process"})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "refresh_assets.cli", "--data-dir", str(data), *args],
                              env=env, capture_output=True, text=True, timeout=900)

    return run, data


def scores_manifest(data, day: str) -> dict:
    from refresh_assets.core.artifacts import OutputStore

    store = OutputStore(data / "outputs")
    return store.read_manifest(store.current("production_scores", day))


def test_the_daily_loop_from_the_shell(cli):
    run, data = cli
    first = run("refresh", "--partition", PRE_DRIFT[0], *light_sets())
    assert first.returncode == 0, first.stderr
    assert "champion: v1" in first.stdout

    for day in QUIET_DAYS:  # no refresh of these days: each is scored from its own population
        scored = run("score", "--partition", day)
        assert scored.returncode == 0, scored.stderr
        assert "production_scores:" in scored.stdout and "scored with v1" in scored.stdout
        assert "drift_report: dataset drift False" in scored.stdout, scored.stdout
        assert "drift-triggered refresh" not in scored.stdout
        assert not (data / "outputs" / "training_dataset" / day).exists()
        assert scores_manifest(data, day)["champion_version"] == 1

    drifted = run("score", "--partition", DRIFTED_DAYS[0], *light_sets())
    assert drifted.returncode == 0, drifted.stderr + drifted.stdout
    assert "drift_report: dataset drift True" in drifted.stdout
    assert f"drift-triggered refresh {DRIFTED_DAYS[0]} run" in drifted.stdout
    assert "decision: PROMOTE" in drifted.stdout and "champion: v2" in drifted.stdout
    assert f"propagation {DRIFTED_DAYS[0]} run" in drifted.stdout
    assert scores_manifest(data, DRIFTED_DAYS[0])["champion_version"] == 2

    persisting = run("score", "--partition", DRIFTED_DAYS[1])
    assert persisting.returncode == 0, persisting.stderr
    assert "scored with v2" in persisting.stdout and "drift-triggered refresh" not in persisting.stdout

    unknown = run("rollback", "--version", "99")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [unknown.stderr.strip()]  # one line, no traceback
    assert "has no version 99 (it has v1, v2)" in unknown.stderr

    back = run("rollback", "--version", "1", "--reason", "v2 misbehaves in the CRM")
    assert back.returncode == 0, back.stderr + back.stdout
    assert "champion is now v1" in back.stdout and f"recorded it as {DRIFTED_DAYS[1]}'s champion_model" in back.stdout
    assert f"propagation {DRIFTED_DAYS[1]} run" in back.stdout
    assert "production_scores: " in back.stdout and "scored with v1" in back.stdout
    assert scores_manifest(data, DRIFTED_DAYS[1])["champion_version"] == 1

    history = json.loads(run("champion", "--json").stdout)
    assert history["champion"]["version"] == 1
    assert [e["action"] for e in history["events"]] == ["promote", "promote", "rollback"]
    assert history["events"][-1]["reason"] == "v2 misbehaves in the CRM"

    # Dagster holds the same story as the registry: D's champion_model is the rollback, and its propagation ran
    with dg.DagsterInstance.from_config(str(data / "dagster_home")) as instance:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_model"), asset_partitions=[DRIFTED_DAYS[1]]),
            limit=1).records[0]
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert metadata["rolled_back"] is True and metadata["version"] == 1 and metadata["previous_version"] == 2
        rollback_run = instance.get_run_by_id(record.run_id)
        assert rollback_run.job_name == "rollback_job" and rollback_run.tags["refresh_assets/trigger"] == "rollback"
        chained = instance.get_runs(dg.RunsFilter(job_name="propagation_job",
                                                  tags={"refresh_assets/trigger": "rollback"}))
        assert [(r.tags["dagster/partition"], r.status) for r in chained] == \
            [(DRIFTED_DAYS[1], dg.DagsterRunStatus.SUCCESS)]
        shadow = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_shadow_test"), asset_partitions=[DRIFTED_DAYS[1]]),
            limit=1).records[0].asset_materialization.metadata
        assert shadow["previous_version"].value == 2 and shadow["new_version"].value == 1
        drift_refreshes = instance.get_runs(dg.RunsFilter(job_name="refresh_job",
                                                          tags={"refresh_assets/trigger": "drift"}))
        assert [r.tags["dagster/partition"] for r in drift_refreshes] == [DRIFTED_DAYS[0]]
