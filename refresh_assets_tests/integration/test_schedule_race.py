"""The weekly schedule, fired by the real daemon, and a GraphQL launch refresh the same partition at once.

A webserver and daemon on a PostgreSQL database of their own, the schedule's cron set to every minute
(REFRESH_ASSETS_REFRESH_CRON) and the warehouse simulated up to yesterday, so that the schedule's request (the
latest complete partition) has data. The test turns the schedule on; as soon as the daemon's tick has
submitted its refresh of yesterday, it launches a refresh of the same partition over GraphQL. Both wait in the same run
queue (``refresh_assets/kind=refresh``, dagster.yaml), so one runs and the other waits until it has ended;
both succeed, and the registry never holds two champions or the same model twice.

The promotion sensor is stopped first: the propagation run a promotion chains is not what this module tests
(test_postgres_ops and test_graphql_trigger run it through the same daemon), and without it the two
refreshes are the only runs, so nothing else shares their queue.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from refresh_assets import trigger
from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG
from refresh_assets_tests.integration.dagster_processes import (
    production_server,
    schedule_state,
    start_schedule,
    stop_schedule,
    stop_sensor,
    wait_for,
    yesterday_utc,
)
from refresh_assets_tests.integration.test_postgres_ops import (  # noqa: F401 (pg_database is a fixture)
    PG,
    pg_database,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
SCHEDULE = "weekly_refresh_schedule"


@pytest.fixture(scope="module")
def live(tmp_path_factory, pg_database):
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    yesterday = yesterday_utc()
    root = tmp_path_factory.mktemp("schedule_race")
    warehouse = root / "raw.duckdb"
    simulate_to_duckdb(SimulationConfig(n_players=1200, days=119, start_date=yesterday - dt.timedelta(days=118),
                                        seed=5), warehouse)
    pg = {**PG, "REFRESH_ASSETS_PG_DB": pg_database}
    # the run queue is under test; steps run in each run's own process (see test_postgres_ops)
    with production_server(root, warehouse, pg, REFRESH_ASSETS_REFRESH_CRON="* * * * *",
                           REFRESH_ASSETS_EXECUTOR="in_process") as (port, instance, data, _):
        yield port, instance, data, yesterday.isoformat()


def test_a_scheduled_and_a_graphql_refresh_of_one_partition_run_one_after_the_other(live):
    from refresh_assets.core.registry import ModelRegistry

    port, instance, data, partition = live
    stop_sensor(port, "promotion_sensor")
    state_id = start_schedule(port, SCHEDULE)
    try:
        scheduled_run = wait_for(
            lambda: [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE}))],
            timeout=150, interval=0.5, what="the daemon's schedule tick to submit a refresh")
        # at once, while the scheduled refresh is queued or running: the same partition over GraphQL
        launched = trigger.launch(HOST, port, "refresh_job", partition, LIGHT_RUN_CONFIG, {"requested_by": "test"})
        # the tick done before the schedule is stopped (see dagster_processes.stop_schedule)
        wait_for(lambda: [t for t in schedule_state(port, SCHEDULE)["ticks"] if t["status"] == "SUCCESS"],
                 timeout=60, interval=0.5, what="the schedule's tick to end")
    finally:
        stop_schedule(port, SCHEDULE, state_id)
    (scheduled,) = scheduled_run
    assert instance.get_run_by_id(scheduled).tags["dagster/partition"] == partition
    created = {r.dagster_run.run_id: r.create_timestamp.timestamp()
               for r in instance.get_run_records(dg.RunsFilter(run_ids=[scheduled, launched]))}

    assert trigger.wait(HOST, port, launched, timeout=600, poll=1.0) == "SUCCESS"
    assert trigger.wait(HOST, port, scheduled, timeout=600, poll=1.0) == "SUCCESS"
    stats = {run_id: instance.get_run_stats(run_id) for run_id in (launched, scheduled)}
    first, second = sorted(stats, key=lambda run_id: stats[run_id].start_time)
    # both were submitted while the first was in flight; one ran, the other waited in the queue and left it
    # only after the first had ended
    assert max(created.values()) < stats[first].end_time
    assert stats[second].launch_time >= stats[first].end_time
    assert stats[second].start_time >= stats[first].end_time
    source = {scheduled: "schedule", launched: "GraphQL"}
    print(f"\nrefreshes of {partition}: {source[first]} {first[:8]} ran {stats[first].end_time - stats[first].start_time:.0f}s; "
          f"{source[second]} {second[:8]} submitted {stats[first].end_time - created[second]:.0f}s before that "
          f"ended, started {stats[second].start_time - stats[first].end_time:.1f}s after")

    registry = ModelRegistry(data / "registry")
    versions = registry.versions()
    assert len({v.model_sha256 for v in versions}) == len(versions)  # no model registered twice
    promotions = [e for e in registry.events() if e.action == "promote"]
    assert promotions[0].run_id == first and promotions[0].version == 1  # the first found no champion
    assert [e.run_id for e in promotions[1:]] in ([], [second])
    assert registry.current_champion().version == promotions[-1].version
    # the second compared its candidates with the champion the first left, not with a stale "no champion"
    from refresh_assets.core.artifacts import OutputStore
    from refresh_assets.core.object_store import read_output_json

    store = OutputStore(data / "outputs")
    (comparison,) = [d for d in store.list_outputs("model_comparison", partition)
                     if store.read_manifest(d)["run_id"] == second]
    decision = read_output_json(comparison, "decision.json", store.read_manifest(comparison))
    assert decision["champion_version"] == 1, decision.get("champion_version")
    # the stopped promotion sensor chained nothing: the two refreshes were the only runs
    assert {r.run_id for r in instance.get_runs()} == {scheduled, launched}
