"""The code location: builds ``defs`` from the pieces; nothing else lives here."""

import dagster as dg

from refresh_assets.alerts import candidate_failure_alert_sensor, failure_alert_sensor
from refresh_assets.assets.candidates import candidate_assets
from refresh_assets.assets.champion import champion_model
from refresh_assets.assets.comparison import model_comparison
from refresh_assets.assets.dataset import training_dataset
from refresh_assets.assets.drift import drift_report
from refresh_assets.assets.population import scoring_population
from refresh_assets.assets.realtime import realtime_scorer
from refresh_assets.assets.scoring import champion_shadow_test, production_scores
from refresh_assets.checks import dataset_checks
from refresh_assets.executors import executor_from_env
from refresh_assets.jobs import propagation_job, refresh_job, rollback_job, scoring_job
from refresh_assets.resources import ArtifactStore, Registry, Warehouse
from refresh_assets.schedules import daily_scoring_schedule, weekly_refresh_schedule
from refresh_assets.sensors import DriftTriggerPolicy, drift_sensor, promotion_sensor


def default_resources() -> dict:
    """Resources from the environment (REFRESH_ASSETS_DATA_DIR, REFRESH_ASSETS_WAREHOUSE) or data/."""
    return {"warehouse": Warehouse(), "artifacts": ArtifactStore(), "registry": Registry(),
            "drift_policy": DriftTriggerPolicy()}


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The whole code location; tests pass their own resources (temporary folders)."""
    return dg.Definitions(
        assets=[training_dataset, *candidate_assets, model_comparison, champion_model, scoring_population,
                champion_shadow_test, production_scores, realtime_scorer, drift_report],
        asset_checks=dataset_checks,
        jobs=[refresh_job, propagation_job, scoring_job, rollback_job],
        schedules=[weekly_refresh_schedule, daily_scoring_schedule],
        sensors=[promotion_sensor, drift_sensor, failure_alert_sensor, candidate_failure_alert_sensor],
        resources={**default_resources(), **(resources or {})},
        # what runs outside the three jobs (asset backfills and "Materialize" in the UI run the implicit asset
        # job) gets the same executor as the jobs, not Dagster's default (a freshly spawned interpreter per step)
        executor=executor_from_env(),
    )


defs = build_defs()
