"""The promotion sensor on a real (temporary) instance holding real materialization events; the schedules."""

import datetime as dt

import dagster as dg
import pytest

from refresh_assets.definitions import defs
from refresh_assets.schedules import daily_scoring_schedule, weekly_refresh_schedule
from refresh_assets.sensors import promotion_sensor


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def champion_event(instance, partition, promoted, version):
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="champion_model", partition=partition,
        metadata={"promoted": promoted, "version": version}))


def tick(instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = promotion_sensor(context)
    return result.run_requests or [], result.cursor


def test_promotion_requests_one_propagation_run_for_its_partition(instance):
    champion_event(instance, "2026-06-01", True, 1)
    requests, cursor = tick(instance)
    assert [(r.partition_key, r.run_key) for r in requests] == [("2026-06-01", "propagate-2026-06-01-v1")]
    assert requests[0].tags["refresh_assets/trigger"] == "promotion"
    # the same event is not requested twice
    again, cursor2 = tick(instance, cursor)
    assert again == [] and cursor2 == cursor


def test_kept_champion_requests_nothing(instance):
    champion_event(instance, "2026-06-08", False, 1)
    requests, cursor = tick(instance)
    assert requests == [] and cursor is not None


def test_mixed_events_request_only_the_promotions_in_order(instance):
    champion_event(instance, "2026-06-01", True, 1)
    champion_event(instance, "2026-06-08", False, 1)
    champion_event(instance, "2026-06-15", True, 2)
    requests, _ = tick(instance)
    assert [r.partition_key for r in requests] == ["2026-06-01", "2026-06-15"]


def test_sensors_on_by_default_schedules_off():
    assert promotion_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert weekly_refresh_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert daily_scoring_schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_schedules_request_the_latest_complete_partition():
    monday = dt.datetime(2026, 6, 8, 4, 0, tzinfo=dt.timezone.utc)
    context = dg.build_schedule_context(scheduled_execution_time=monday)
    request = weekly_refresh_schedule(context)
    assert request.partition_key == "2026-06-07" and request.run_key == "weekly_refresh_schedule-2026-06-07"
    assert weekly_refresh_schedule.job_name == "refresh_job"
    context = dg.build_schedule_context(scheduled_execution_time=monday.replace(hour=6))
    assert daily_scoring_schedule(context).partition_key == "2026-06-07"
    too_early = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    assert isinstance(weekly_refresh_schedule(too_early), dg.SkipReason)


def test_asset_graph_lineage():
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert parents["candidate_logreg"] == {"training_dataset"}
    assert parents["candidate_ensemble"] == {"training_dataset", "candidate_logreg", "candidate_random_forest",
                                             "candidate_hist_gb"}
    assert parents["model_comparison"] >= {"training_dataset", "candidate_ensemble"}
    assert parents["champion_model"] == {"model_comparison"}
    # the daily steps read the daily population, never a refresh's dataset (only a refresh of D builds one)
    assert parents["production_scores"] == {"scoring_population", "champion_model"}
    # the real-time scorer is built from the day's batch scores (its conformance sample replays them)
    assert parents["realtime_scorer"] == {"scoring_population", "production_scores"}
    assert parents["champion_shadow_test"] == {"scoring_population", "champion_model"}
    assert parents["drift_report"] == {"scoring_population", "champion_model"}
    assert parents["scoring_population"] == set()
    node_names = {name: {n.name for n in defs.resolve_job_def(name).nodes}
                  for name in ("scoring_job", "propagation_job", "rollback_job")}
    assert node_names == {"scoring_job": {"scoring_population", "production_scores", "drift_report"},
                          "propagation_job": {"scoring_population", "champion_shadow_test", "production_scores",
                                              "realtime_scorer"},
                          "rollback_job": {"champion_model"}}
    job = defs.resolve_job_def("refresh_job")
    assert {n.name for n in job.nodes} == {"training_dataset", "candidate_logreg", "candidate_random_forest",
                                           "candidate_hist_gb", "candidate_ensemble", "model_comparison",
                                           "champion_model", "training_dataset_checks"}
    # every dataset rule is a blocking check of training_dataset, run by refresh_job
    from refresh_assets.checks import training_dataset_checks

    specs = list(training_dataset_checks.check_specs)
    assert {s.name for s in specs} == {"schema", "row_counts", "label_values", "label_rate", "holdout_size",
                                       "null_rates", "constant_features", "unique_keys", "no_future_dates",
                                       "slice_columns"}
    assert all(s.blocking and s.asset_key == dg.AssetKey("training_dataset") for s in specs)
    assert {k.name for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key.path == ["training_dataset"]} \
        == {s.name for s in specs}
