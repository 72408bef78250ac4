"""The daily loop under a real dagster-daemon and webserver, on a PostgreSQL database of its own.

Three consecutive days are scored by ``scoring_job`` runs the daemon executes: D1 and D2 launched over GraphQL,
D3 (= yesterday, UTC) requested by ``daily_scoring_schedule``'s own tick (its cron set to every minute from
REFRESH_ASSETS_SCORING_CRON). The warehouse is simulated up to yesterday, then a covariate drift is injected
as a step on D2: a burst of new players (channel ``influencer``, installed on D2, 20% of the players active then)
who play from D2 on. D1's scoring population does not hold them (they installed after it), so D1's drift
report is clean; D2's and D3's drift on the same columns (channel, tenure, and the short histories of new
players), D3's a subset of D2's. Checked by hand on this data (seeded, and the same every day: only the dates
move) before writing the asserts, against either champion's training data: D1's largest column score is
0.053, D2 and D3 flag 10 columns (channel 0.25, minutes_trend 0.45), and no column left unflagged on D2
scores above 0.083 on D3 (threshold 0.1).

Before the three days, a refresh of D0 (two weeks earlier) launched over GraphQL with a deliberately weak
configuration (only ``hist_gb`` may win, trained on 300 rows with one parameter set) makes champion v1. Then:

* D1 and D2 are scored green; D1's drift report finds no dataset drift, D2's does;
* ``drift_sensor`` launches exactly one ``refresh_job`` (tag ``refresh_assets/trigger=drift``), for D2, with
  the default launchpad inputs; it succeeds and promotes v2 (a tuned challenger on 30,000 rows beats the weak
  v1 by ~0.04 ROC AUC on D2's holdout), and ``promotion_sensor`` chains one ``propagation_job`` for D2 whose
  scores carry v2;
* D3, scored by the schedule's run, is the same drift persisting: the sensor's tick that read its report says
  so and requests nothing;
* a rollback of Y (= D3) to v1 (``rollback_job``) succeeds, ``promotion_sensor`` chains exactly one
  propagation run for Y (tag ``refresh_assets/trigger=rollback``), and Y's current scores carry v1 again;
* every run of the instance succeeded (no run_retries re-execution either).

Runs execute their steps in the run worker's own process (REFRESH_ASSETS_EXECUTOR=in_process, as
test_schedule_race). The module's time (3.5-4.5 min) is dominated by the drift-triggered refresh (default
inputs: 4 candidates, tuning budget 4, on ~14,000 training rows: 80-120 s on 2 loaded cores); the schedule's
tick (every minute) is waited for while that refresh runs.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from refresh_assets import trigger
from refresh_assets.core.object_store import read_output_json
from refresh_assets.local_runs import rollback_run_config
from refresh_assets_tests.integration.dagster_processes import (
    REPOSITORY,
    post_graphql,
    production_server,
    schedule_state,
    start_schedule,
    stop_schedule,
    wait_for,
    yesterday_utc,
)
from refresh_assets_tests.integration.test_postgres_ops import (  # noqa: F401 (pg_database is a fixture)
    PG,
    pg_database,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
RUN_TIMEOUT = 600
SENSOR_INTERVAL = 3  # REFRESH_ASSETS_SENSOR_INTERVAL_SECONDS (project_env)
SCHEDULE = "daily_scoring_schedule"
TRIGGER_TAG = "refresh_assets/trigger"
PARTITION_TAG = "dagster/partition"
#: Share of the players active on D2 (a session in the 28 days up to it) that the injected burst adds.
BURST_SHARE = 0.2
#: The refresh of D0 that makes champion v1: only hist_gb may win, tuned with one parameter set on 300 rows
#: (ROC AUC ~0.875 on D2's holdout, where the default refresh's best candidate reaches ~0.915); the other
#: candidates are trained just as cheaply, since the refresh runs them all.
_CHEAP = {"tuning_budget": 1, "cv_splits": 2, "max_training_rows": 300, "importance_rows": 0}
WEAK_CHAMPION_CONFIG = {"ops": {
    **{f"candidate_{a}": {"config": dict(_CHEAP)} for a in ("logreg", "random_forest", "hist_gb", "ensemble")},
    "model_comparison": {"config": {"algorithms": ["hist_gb"], "min_candidates": 1, "bootstrap_samples": 200}},
}}

SENSOR_TICKS = """
query SensorTicks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 100) { status timestamp skipReason runIds } } }
    ... on PythonError { message }
  }
}"""


def inject_new_player_burst(warehouse: Path, day: dt.date, last: dt.date, share: float, seed: int) -> int:
    """A step covariate drift from ``day`` on: ``share`` x (players active in the 28 days up to ``day``) new
    players, channel 'influencer', installed on ``day``, each playing the sessions an existing player active on
    ``day`` played from ``day`` to ``last`` (their levels counted from 1). Nothing before ``day`` changes.
    Returns how many players were added."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(str(warehouse))
    try:
        (active,), = con.execute("SELECT count(DISTINCT player_id) FROM sessions "
                                 "WHERE session_date BETWEEN ?::DATE - 27 AND ?::DATE", [day, day]).fetchall()
        on_day = np.sort(np.array([row[0] for row in con.execute(
            "SELECT DISTINCT player_id FROM sessions WHERE session_date = ?::DATE", [day]).fetchall()]))
        n_new = int(round(active * share))
        (top,), = con.execute("SELECT max(player_id) FROM players").fetchall()
        burst = pd.DataFrame({
            "source_id": np.random.default_rng(seed).choice(on_day, size=n_new, replace=False).astype("int64"),
            "player_id": np.arange(top + 1, top + 1 + n_new, dtype="int64"),
        })
        con.register("burst", burst)
        con.execute("INSERT INTO players SELECT b.player_id, ?::DATE, p.platform, p.country, 'influencer' "
                    "FROM burst AS b JOIN players AS p ON p.player_id = b.source_id", [day])
        con.execute("INSERT INTO sessions SELECT b.player_id, s.session_date, s.sessions, s.minutes, "
                    "1 + (s.session_date - ?::DATE) FROM burst AS b JOIN sessions AS s ON s.player_id = b.source_id "
                    "WHERE s.session_date BETWEEN ?::DATE AND ?::DATE", [day, day, last])
        con.unregister("burst")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return n_new


@dataclass
class Loop:
    port: int
    instance: dg.DagsterInstance
    data: Path
    days: dict[str, str]  # D0 (the champion's refresh), D1, D2, D3 (= yesterday)
    d3_report_read_at: float = 0.0  # time.monotonic() when drift_sensor's tick on D3's report was seen

    def launch(self, job: str, partition: str, run_config: dict | None = None) -> str:
        return trigger.launch(HOST, self.port, job, partition, run_config, {"requested_by": "test_daily_loop"})

    def wait(self, run_id: str) -> str:
        return trigger.wait(HOST, self.port, run_id, timeout=RUN_TIMEOUT, poll=1.0)

    def runs(self, job: str, **tags: str) -> list:
        return self.instance.get_runs(dg.RunsFilter(job_name=job, tags=tags or None))

    def wait_for_run(self, job: str, what: str, **tags: str):
        """The one run of ``job`` with these tags, once a sensor or schedule has created it."""
        (run,) = wait_for(lambda: self.runs(job, **tags), timeout=RUN_TIMEOUT, interval=1.0, what=what)
        return run

    def duration(self, run_id: str) -> float:
        stats = self.instance.get_run_stats(run_id)
        return stats.end_time - stats.start_time

    def materialization(self, asset: str, partition: str, run_id: str) -> dict:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=50).records
        (record,) = [r for r in records if r.run_id == run_id]
        return {key: value.value for key, value in record.asset_materialization.metadata.items()}

    def store(self):
        from refresh_assets.core.artifacts import OutputStore

        return OutputStore(self.data / "outputs")

    def output_of(self, asset: str, partition: str, run_id: str) -> tuple[Path, dict]:
        """The committed output folder of ``run_id`` for the asset's partition, and its manifest."""
        store = self.store()
        (folder,) = [d for d in store.list_outputs(asset, partition) if store.read_manifest(d)["run_id"] == run_id]
        return folder, store.read_manifest(folder)

    def drift_report(self, partition: str, run_id: str) -> dict:
        """The drift_report materialization of ``run_id``: its metadata, checked against its drift.json."""
        report = self.materialization("drift_report", partition, run_id)
        folder, manifest = self.output_of("drift_report", partition, run_id)
        judged = read_output_json(folder, "drift.json", manifest)
        assert report["dataset_drift"] is judged["dataset_drift"]
        # the columns drift_sensor compares (a new drift or the same one) are those counted in the share, not a
        # column with too few values to be judged (shown in the report, not counted)
        assert report["drifted_column_names"] == judged["drifted_columns"], (
            f"{partition}: drifted_column_names {report['drifted_column_names']} holds columns that were not judged "
            f"({judged['unjudged_columns']}); counted: {judged['drifted_columns']}")
        return report

    def registry(self):
        from refresh_assets.core.registry import ModelRegistry

        return ModelRegistry(self.data / "registry")

    def drift_sensor_ticks(self) -> list[dict]:
        answer = post_graphql(self.port, SENSOR_TICKS, {"selector": {**REPOSITORY, "sensorName": "drift_sensor"}})
        sensor = answer["data"]["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        return sensor["sensorState"]["ticks"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory, pg_database):
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    # the schedule ticks a few minutes into the module (after the champion's refresh and two scoring runs)
    yesterday = yesterday_utc(margin_seconds=600)
    days = {"D0": yesterday - dt.timedelta(days=14), "D1": yesterday - dt.timedelta(days=2),
            "D2": yesterday - dt.timedelta(days=1), "D3": yesterday}
    root = tmp_path_factory.mktemp("daily_loop")
    warehouse = root / "raw.duckdb"
    # ~1,650 players active per day (the scoring population), ~14,000 training rows for a refresh
    simulate_to_duckdb(SimulationConfig(n_players=2000, days=119, start_date=yesterday - dt.timedelta(days=118),
                                        seed=21), warehouse)
    added = inject_new_player_burst(warehouse, days["D2"], yesterday, BURST_SHARE, seed=11)
    print(f"\nwarehouse up to {yesterday}; {added} new 'influencer' players installed on {days['D2']}")
    pg = {**PG, "REFRESH_ASSETS_PG_DB": pg_database}
    # steps run in each run's own process (see test_postgres_ops)
    with production_server(root, warehouse, pg, REFRESH_ASSETS_SCORING_CRON="* * * * *",
                           REFRESH_ASSETS_EXECUTOR="in_process") as (port, instance, data, _):
        yield Loop(port, instance, data, {name: day.isoformat() for name, day in days.items()})


def test_a_weak_refresh_of_d0_makes_champion_v1_and_propagates(loop):
    d0 = loop.days["D0"]
    refresh = loop.launch("refresh_job", d0, WEAK_CHAMPION_CONFIG)
    assert loop.wait(refresh) == "SUCCESS"
    assert loop.materialization("champion_model", d0, refresh)["promoted"] is True
    champion = loop.registry().current_champion()
    assert (champion.version, champion.algorithm, champion.partition_key) == (1, "hist_gb", d0)
    # chained at once; it runs beside D1's scoring (another partition) and is checked in the next test
    loop.wait_for_run("propagation_job", "the promotion of v1 to chain its propagation",
                      **{PARTITION_TAG: d0, TRIGGER_TAG: "promotion"})


def test_two_days_are_scored_the_first_clean_the_second_drifted(loop):
    d0, d1, d2 = loop.days["D0"], loop.days["D1"], loop.days["D2"]
    runs = {"D1": loop.launch("scoring_job", d1)}
    # D2 is launched once D1's drift report is in (its scores are still being written): drift_sensor reads the
    # reports in the order they were materialized, which is then the days' order
    wait_for(lambda: loop.instance.get_run_by_id(runs["D1"]).is_finished or loop.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[d1]), limit=1).records,
        timeout=RUN_TIMEOUT, interval=0.5, what="D1's drift report")
    runs["D2"] = loop.launch("scoring_job", d2)
    reports = {}
    for day, run_id in runs.items():
        partition = loop.days[day]
        assert loop.wait(run_id) == "SUCCESS", day
        assert loop.output_of("production_scores", partition, run_id)[1]["champion_version"] == 1
        reports[day] = loop.drift_report(partition, run_id)
        assert reports[day]["champion_version"] == 1 and reports[day]["reference_partition"] == d0
    (d0_propagation,) = loop.runs("propagation_job", **{PARTITION_TAG: d0})
    assert loop.wait(d0_propagation.run_id) == "SUCCESS"
    assert loop.output_of("production_scores", d0, d0_propagation.run_id)[1]["champion_version"] == 1
    assert reports["D1"]["dataset_drift"] is False, reports["D1"]["drifted_column_names"]
    assert reports["D1"]["drifted_column_names"] == []
    assert reports["D2"]["dataset_drift"] is True
    assert {"channel", "tenure_days"} <= set(reports["D2"]["drifted_column_names"])


def test_the_schedule_scores_the_third_day_while_the_drift_refresh_runs(loop):
    d2, d3 = loop.days["D2"], loop.days["D3"]
    # the sensor has read D2's report (every 3 s) before D3 is scored: the days are seen in order
    loop.wait_for_run("refresh_job", "drift_sensor to request a refresh for D2's drift", **{TRIGGER_TAG: "drift"})
    state_id = start_schedule(loop.port, SCHEDULE)
    try:
        # the tick done (it submitted its run) before the schedule is stopped: see dagster_processes.stop_schedule
        (tick,) = wait_for(
            lambda: [t for t in schedule_state(loop.port, SCHEDULE)["ticks"] if t["status"] == "SUCCESS"],
            timeout=150, interval=0.5, what="the daemon's schedule tick to submit a scoring run")
    finally:
        stop_schedule(loop.port, SCHEDULE, state_id)
    (run,) = loop.instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE}))
    assert tick["runIds"] == [run.run_id]
    assert run.job_name == "scoring_job"
    assert run.tags[PARTITION_TAG] == d3, f"the tick requested {run.tags[PARTITION_TAG]}, not yesterday ({d3})"
    assert run.tags[TRIGGER_TAG] == SCHEDULE
    assert loop.wait(run.run_id) == "SUCCESS"
    report = loop.drift_report(d3, run.run_id)
    d2_report = loop.drift_report(d2, loop.runs("scoring_job", **{PARTITION_TAG: d2})[0].run_id)
    assert report["dataset_drift"] is True
    # the same drift, persisting: no column drifts on D3 that had not on D2
    assert set(report["drifted_column_names"]) <= set(d2_report["drifted_column_names"]), report
    # and the sensor, reading D3's report, says so and requests nothing
    same_drift = f"{d3}: the same drift"
    tick = wait_for(lambda: [t for t in loop.drift_sensor_ticks() if same_drift in (t["skipReason"] or "")],
                    timeout=120, interval=1.0, what="drift_sensor's tick on D3's report")[0]
    assert tick["status"] == "SKIPPED" and tick["runIds"] == [] and f"refresh of {d2}" in tick["skipReason"], tick
    loop.d3_report_read_at = time.monotonic()
    print(f"\nD3 drift report (champion v{report['champion_version']}): {report['drifted_column_names']}; "
          f"drift_sensor: {tick['skipReason']}")


def test_the_drift_sensor_launched_one_refresh_for_d2_which_promoted_and_propagated(loop):
    d2 = loop.days["D2"]
    refresh = loop.wait_for_run("refresh_job", "the drift-triggered refresh", **{TRIGGER_TAG: "drift"})
    assert refresh.tags[PARTITION_TAG] == d2
    assert loop.wait(refresh.run_id) == "SUCCESS"
    d2_scoring = loop.runs("scoring_job", **{PARTITION_TAG: d2})[0]
    assert refresh.tags["refresh_assets/drift_report_run"] == d2_scoring.run_id
    assert "channel" in refresh.tags["refresh_assets/drifted_columns"].split(",")
    assert refresh.run_config == {}  # the default launchpad inputs
    champion = loop.materialization("champion_model", d2, refresh.run_id)
    folder, manifest = loop.output_of("model_comparison", d2, refresh.run_id)
    decision = read_output_json(folder, "decision.json", manifest)
    gain = decision["decision"]["bootstrap"]
    print(f"\ndrift refresh of {d2}: {'promote' if decision['promote'] else 'keep'} "
          f"({decision['challenger']} vs v{decision['champion_version']}; ROC AUC gain {gain['observed_diff']:.4f}, "
          f"interval [{gain['lower']:.4f}, {gain['upper']:.4f}]), {loop.duration(refresh.run_id):.0f}s: "
          f"{decision['decision']['reason']}")
    assert decision["promote"] is True and decision["champion_version"] == 1, decision["decision"]["reason"]
    assert champion["promoted"] is True and champion["version"] == 2 and champion["previous_version"] == 1
    assert loop.registry().current_champion().version == 2

    propagation = loop.wait_for_run("propagation_job", "the promotion of v2 to chain its propagation",
                                    **{PARTITION_TAG: d2, TRIGGER_TAG: "promotion"})
    assert propagation.tags["refresh_assets/champion_version"] == "2"
    assert loop.wait(propagation.run_id) == "SUCCESS"
    assert loop.output_of("production_scores", d2, propagation.run_id)[1]["champion_version"] == 2
    # D3's report (the same drift) requested nothing: still one drift-triggered refresh, some ticks later
    time.sleep(max(0.0, 5 * SENSOR_INTERVAL - (time.monotonic() - loop.d3_report_read_at)))
    assert [r.run_id for r in loop.runs("refresh_job", **{TRIGGER_TAG: "drift"})] == [refresh.run_id]
    scoring = {day: loop.runs("scoring_job", **{PARTITION_TAG: loop.days[day]}) for day in ("D1", "D2", "D3")}
    assert all(len(runs) == 1 for runs in scoring.values()), scoring
    print("scoring runs: " + ", ".join(f"{day} {loop.days[day]} {loop.duration(runs[0].run_id):.1f}s"
                                       + (" (schedule)" if runs[0].tags.get(TRIGGER_TAG) == SCHEDULE else "")
                                       for day, runs in scoring.items()))


def test_a_rollback_propagates_once_and_the_scores_carry_the_restored_version(loop):
    d3 = loop.days["D3"]
    rollback = loop.launch("rollback_job", d3, rollback_run_config(1, "test rollback"))
    assert loop.wait(rollback) == "SUCCESS"
    champion = loop.materialization("champion_model", d3, rollback)
    assert champion["rolled_back"] is True and champion["action"] == "rollback"
    assert champion["version"] == 1 and champion["previous_version"] == 2
    registry = loop.registry()
    assert registry.current_champion().version == 1
    last = registry.events()[-1]
    assert (last.action, last.version, last.run_id, last.partition_key) == ("rollback", 1, rollback, d3)

    propagation = loop.wait_for_run("propagation_job", "the rollback to chain its propagation",
                                    **{PARTITION_TAG: d3, TRIGGER_TAG: "rollback"})
    assert propagation.tags["refresh_assets/promoting_run"] == rollback
    assert loop.wait(propagation.run_id) == "SUCCESS"
    current = loop.store().current("production_scores", d3)
    manifest = loop.store().read_manifest(current)
    assert manifest["run_id"] == propagation.run_id and manifest["champion_version"] == 1
    print(f"\nrollback of {d3} to v1: {loop.duration(rollback):.1f}s, propagation "
          f"{loop.duration(propagation.run_id):.1f}s, scores now v{manifest['champion_version']}")

    # every run the loop made, each green once (no run_retries re-execution)
    time.sleep(5)  # a sensor interval: nothing else is chained
    runs = loop.instance.get_runs()
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.job_name, r.status) for r in runs]
    made = sorted((r.job_name, r.tags[PARTITION_TAG], r.tags.get(TRIGGER_TAG, "")) for r in runs)
    days = loop.days
    assert made == sorted([
        ("refresh_job", days["D0"], ""), ("propagation_job", days["D0"], "promotion"),
        ("scoring_job", days["D1"], ""), ("scoring_job", days["D2"], ""), ("scoring_job", days["D3"], SCHEDULE),
        ("refresh_job", days["D2"], "drift"), ("propagation_job", days["D2"], "promotion"),
        ("rollback_job", days["D3"], ""), ("propagation_job", days["D3"], "rollback"),
    ])
