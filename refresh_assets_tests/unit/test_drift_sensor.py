"""drift_sensor on a real (temporary) instance holding real materialization events and runs."""

import json
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


def drift_event(instance, partition, drifted, share=0.6, columns=None):
    names = list(columns) if columns is not None else (["channel"] if drifted else [])
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="drift_report", partition=partition,
        metadata={"dataset_drift": drifted, "drift_share": share, "drifted_columns": len(names),
                  "drifted_column_names": dg.MetadataValue.json(names)}))


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


DAY = 24 * 3600


def days_from(start: str, n: int) -> list[str]:
    import datetime as dt

    first = dt.date.fromisoformat(start)
    return [str(first + dt.timedelta(days=k)) for k in range(n)]


def run_daily(instance, reports, start_now=None):
    """One drift report a day, one sensor tick after each (the daemon's loop), the requested refreshes run and
    succeed at once. ``reports``: (partition, drifted, columns). Returns the partitions refreshed."""
    now = start_now or time.time()
    cursor, refreshed = None, []
    for k, (partition, drifted, columns) in enumerate(reports):
        drift_event(instance, partition, drifted, columns=columns)
        requests, cursor, _ = drift_requests(instance, cursor, min_interval_hours=24, now=now + k * DAY)
        for request in requests:
            refreshed.append(request.partition_key)
            add_refresh_run(instance, request.partition_key, dg.DagsterRunStatus.SUCCESS, dict(request.tags))
    return refreshed


def test_a_drift_that_persists_ten_days_is_answered_by_exactly_one_refresh(instance):
    days = days_from("2026-06-01", 13)
    reports = [(days[0], False, []), (days[1], False, [])] + [(d, True, ["channel"]) for d in days[2:12]]
    assert run_daily(instance, reports) == [days[2]]


def test_a_different_drift_later_requests_one_more(instance):
    days = days_from("2026-06-01", 30)
    reports = [(d, True, ["channel"]) for d in days[:10]]
    # later, tenure drifts too: a column the answered drift did not have
    reports += [(d, True, ["channel", "tenure_days"]) for d in days[10:20]]
    assert run_daily(instance, reports) == [days[0], days[10]]


def test_a_clean_report_ends_the_episode_and_the_same_columns_drifting_again_is_a_new_drift(instance):
    days = days_from("2026-06-01", 12)
    reports = [(d, True, ["channel"]) for d in days[:4]] + [(days[4], False, [])]
    reports += [(d, True, ["channel"]) for d in days[5:12]]
    assert run_daily(instance, reports) == [days[0], days[5]]


def test_a_failed_answer_leaves_the_drift_unanswered(instance):
    days = days_from("2026-06-01", 3)
    now = time.time()
    drift_event(instance, days[0], True)
    requests, cursor, _ = drift_requests(instance, None, min_interval_hours=24, now=now)
    assert [r.partition_key for r in requests] == [days[0]]
    add_refresh_run(instance, days[0], dg.DagsterRunStatus.FAILURE, dict(requests[0].tags))
    drift_event(instance, days[1], True)
    requests, cursor, skipped = drift_requests(instance, cursor, min_interval_hours=24, now=now + 1.1 * DAY)
    assert [r.partition_key for r in requests] == [days[1]]
    # while the answer is still running, the same drift waits for it
    add_refresh_run(instance, days[1], dg.DagsterRunStatus.STARTED, dict(requests[0].tags))
    drift_event(instance, days[2], True)
    requests, _, skipped = drift_requests(instance, cursor, min_interval_hours=24, now=now + 2.2 * DAY)
    assert requests == [] and "the same drift (channel) was answered by the refresh of " + days[1] in skipped[0]


def test_a_cursor_of_the_sensor_before_episodes_is_read_as_the_last_storage_id(instance):
    drift_event(instance, "2026-06-01", True)
    _, cursor, _ = drift_requests(instance, None, min_interval_hours=24, now=time.time())
    after = json.loads(cursor)["after"]
    drift_event(instance, "2026-06-02", True, columns=["tenure_days"])
    requests, _, _ = drift_requests(instance, str(after), min_interval_hours=24, now=time.time() + DAY)
    assert [r.partition_key for r in requests] == ["2026-06-02"]
