"""Drift on simulated data with a change injected on DRIFT_DATE: detection, false alarms, and the loop
drift_report -> drift_sensor -> refresh_job -> a new champion, on a real Dagster instance."""

import datetime as dt

import dagster as dg
import pytest

from refresh_assets.local_runs import run_refresh, tick_sensor
from refresh_assets_tests.conftest import DRIFT_DATE, LIGHT_RUN_CONFIG, PRE_DRIFT, make_project

pytestmark = pytest.mark.integration

UNDRIFTED = [str(dt.date(2026, 4, 7) + dt.timedelta(days=i)) for i in range(12)]  # Apr 7 .. Apr 18
DRIFTED = [str(DRIFT_DATE + dt.timedelta(days=d)) for d in (35, 42, 49, 56)]


def materialize_drift(project, partition):
    job = project.defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=project.instance, partition_key=partition,
                                    asset_selection=[dg.AssetKey("scoring_population"), dg.AssetKey("drift_report")],
                                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    assert result.success
    record = project.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[partition]), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, drift_warehouse):
    """A champion trained before the change, then a drift report for every partition to check."""
    project = make_project(tmp_path_factory.mktemp("drift"), drift_warehouse)
    assert run_refresh(project.defs, project.instance, PRE_DRIFT[0], LIGHT_RUN_CONFIG).success
    reports = {p: materialize_drift(project, p) for p in UNDRIFTED + DRIFTED}
    yield project, reports
    project.instance.dispose()


# A timeout of its own: the module's fixture (a refresh and 16 drift reports) is set up inside this test, and took
# 496 s of the 1,200 s default with make test's 6 workers on 2 cores (2026-12-04), 182 s with 4 workers.
@pytest.mark.timeout(2400)
def test_partitions_before_the_change_are_not_flagged(monitored):
    _, reports = monitored
    flagged = [p for p in UNDRIFTED if reports[p]["dataset_drift"]]
    rate = len(flagged) / len(UNDRIFTED)
    print(f"\ndrift false-alarm rate over {len(UNDRIFTED)} undrifted partitions: {rate:.0%} "
          f"(max drift share {max(reports[p]['drift_share'] for p in UNDRIFTED):.2f})")
    assert flagged == []


def test_partitions_after_the_change_are_flagged(monitored):
    _, reports = monitored
    print("\ndrift share after the change: " + ", ".join(f"{p} {reports[p]['drift_share']:.2f}" for p in DRIFTED))
    assert all(reports[p]["dataset_drift"] for p in DRIFTED)


def test_drift_check_warns_in_the_ui(monitored):
    project, _ = monitored
    outcomes = {}
    for run in project.instance.get_runs():
        for entry in project.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            if evaluation.check_name == "no_dataset_drift":
                outcomes[evaluation.partition or run.tags.get("dagster/partition")] = evaluation
    drifted = outcomes[DRIFTED[-1]]
    assert drifted.passed is False and drifted.severity == dg.AssetCheckSeverity.WARN
    assert outcomes[UNDRIFTED[0]].passed is True


def test_drift_triggers_a_rebuild_that_promotes_a_new_champion(monitored):
    project, _ = monitored
    before = project.registry().current_champion().version
    runs = tick_sensor(project.defs, project.instance, "drift_sensor", quiet=True, run_config=LIGHT_RUN_CONFIG)
    # every drifted report found its refresh, minus those the min interval (24 h) holds back: exactly one
    assert len(runs) == 1
    partition, run_id, ok = runs[0]
    assert ok and partition in DRIFTED
    run = project.instance.get_run_by_id(run_id)
    assert run.job_name == "refresh_job" and run.tags["refresh_assets/trigger"] == "drift"
    assert float(run.tags["refresh_assets/drift_share"]) >= 0.5
    record = project.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_model"), asset_partitions=[partition]), limit=1
    ).records[0]
    assert record.run_id == run_id
    assert record.asset_materialization.metadata["promoted"].value is True
    assert project.registry().current_champion().version == before + 1
    # the same reports seen again request nothing
    assert tick_sensor(project.defs, project.instance, "drift_sensor", quiet=True, run_config=LIGHT_RUN_CONFIG) == []
