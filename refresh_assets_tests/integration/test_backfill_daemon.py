"""A Dagster backfill of refresh_job over several partitions, run by a real daemon, ends green.

No step is skipped through optional outputs: a kept champion materializes with promoted=false, so an
asset backfill never reports a partition as failed (dagster-io/dagster#34219).
"""

import subprocess

import dagster as dg
import pytest

from refresh_assets_tests.integration.dagster_processes import (
    BIN,
    REPO,
    dagster_processes,
    project_env,
    wait_for,
    write_instance_yaml,
)

pytestmark = pytest.mark.integration

PARTITIONS = ["2026-04-06", "2026-04-07", "2026-04-08"]
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def test_backfill_over_several_partitions_ends_green(tmp_path, drift_warehouse):
    home, data = tmp_path / "home", tmp_path / "data"
    write_instance_yaml(home, storage={"sqlite": {"base_dir": str(home / "storage")}})
    env = project_env(home, data, drift_warehouse)
    subprocess.run([str(BIN / "dagster"), "job", "backfill", "-w", str(REPO / "workspace.yaml"), "-j", "refresh_job",
                    "--from", PARTITIONS[0], "--to", PARTITIONS[-1], "--noprompt"],
                   env=env, cwd=REPO, check=True, capture_output=True)
    with dg.DagsterInstance.from_config(str(home)) as instance, \
            dagster_processes(env, tmp_path / "logs", webserver=False):
        backfill = instance.get_backfills()[0]

        def backfill_runs():
            return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))

        wait_for(lambda: len(backfill_runs()) == len(PARTITIONS) and all(r.status in DONE for r in backfill_runs()),
                 timeout=900, interval=3, what="the backfill's runs")
        runs = backfill_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == PARTITIONS
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * len(PARTITIONS)
        wait_for(lambda: instance.get_backfill(backfill.backfill_id).status.value.startswith("COMPLETED"),
                 timeout=120, interval=2, what="the backfill to complete")
        assert instance.get_backfill(backfill.backfill_id).status.value == "COMPLETED_SUCCESS"

        # the first refresh promoted: the promotion sensor, run by the daemon, chained exactly one propagation
        def propagation_runs():
            return instance.get_runs(filters=dg.RunsFilter(job_name="propagation_job"))

        wait_for(lambda: propagation_runs() and all(r.status in DONE for r in propagation_runs()),
                 timeout=300, interval=3, what="the propagation run")
        promoted = []
        for partition in PARTITIONS:
            record = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_model"), asset_partitions=[partition]),
                limit=1).records[0]
            if record.asset_materialization.metadata["promoted"].value:
                promoted.append(partition)
        assert promoted[0] == PARTITIONS[0]
        chained = propagation_runs()
        assert sorted(r.tags["dagster/partition"] for r in chained) == sorted(promoted)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in chained)
