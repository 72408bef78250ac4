"""drift_sensor on a real (temporary) instance holding real materialization events and runs."""

import time
import uuid

import dagster as dg
import pytest

from refresh_assets.definitions import defs
from refresh_assets.sensors import DriftTriggerPolicy, drift_requests, drift_sensor


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def drift_event(instance, partition, drifted, share=0.6):
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="drift_report", partition=partition,
        metadata={"dataset_drift": drifted, "drift_share": share, "drifted_columns": 9}))


def add_refresh_run(instance, partition, status, tags=None):
    run = dg.DagsterRun(job_name="refresh_job", run_id=str(uuid.uuid4()), status=status,
                        tags={"dagster/partition": partition, **(tags or {})})
    instance.add_run(run)
    return run


def tick(instance, cursor=None, hours=24.0):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"drift_policy": DriftTriggerPolicy(min_interval_hours=hours)})
    result = drift_sensor(context)
    return result.run_requests or [], result.cursor


def test_drift_found_requests_one_refresh_with_figures(instance):
    drift_event(instance, "2026-06-01", True, share=0.65)
    requests, _ = tick(instance)
    assert len(requests) == 1
    request = requests[0]
    assert request.partition_key == "2026-06-01"
    assert request.tags["refresh_assets/trigger"] == "drift"
    assert request.tags["refresh_assets/drift_share"] == "0.65"


def test_no_drift_requests_nothing(instance):
    drift_event(instance, "2026-06-01", False, share=0.1)
    requests, cursor = tick(instance)
    assert requests == [] and cursor is not None


def test_the_same_report_seen_twice_requests_once(instance):
    drift_event(instance, "2026-06-01", True)
    first, cursor = tick(instance)
    second, _ = tick(instance, cursor)
    assert len(first) == 1 and second == []


def test_refresh_in_flight_requests_nothing(instance):
    add_refresh_run(instance, "2026-06-01", dg.DagsterRunStatus.STARTED)
    drift_event(instance, "2026-06-01", True)
    requests, _ = tick(instance)
    assert requests == []
    # a finished refresh of the partition does not block
    drift_event(instance, "2026-06-02", True)
    add_refresh_run(instance, "2026-06-02", dg.DagsterRunStatus.SUCCESS)
    requests, _ = tick(instance)
    assert [r.partition_key for r in requests] == ["2026-06-02"]


def test_minimum_interval_between_drift_triggered_rebuilds(instance):
    add_refresh_run(instance, "2026-05-30", dg.DagsterRunStatus.SUCCESS, {"refresh_assets/trigger": "drift"})
    drift_event(instance, "2026-06-01", True)
    requests, _, skipped = drift_requests(instance, None, min_interval_hours=24, now=time.time())
    assert requests == [] and "h ago" in skipped[0]
    requests, _, _ = drift_requests(instance, None, min_interval_hours=24, now=time.time() + 25 * 3600)
    assert [r.partition_key for r in requests] == ["2026-06-01"]
    # two drifted reports in one tick: only the first gets a refresh within the interval
    drift_event(instance, "2026-06-02", True)
    requests, _, skipped = drift_requests(instance, None, min_interval_hours=24, now=time.time() + 25 * 3600)
    assert [r.partition_key for r in requests] == ["2026-06-01"]
    assert any("2026-06-02" in s for s in skipped)
