"""The jobs: the weekly refresh, the propagation a promotion chains to, and daily scoring."""

from __future__ import annotations

import os

import dagster as dg

from refresh_assets.assets.candidates import candidate_assets
from refresh_assets.assets.champion import CHAMPION
from refresh_assets.assets.comparison import COMPARISON
from refresh_assets.assets.dataset import DATASET
from refresh_assets.assets.drift import DRIFT
from refresh_assets.assets.scoring import SCORES, SHADOW
from refresh_assets.executors import executor_from_env


def retry_policy_from_env() -> dg.RetryPolicy:
    """Per-step retries an operator sets without editing code (REFRESH_ASSETS_RETRY_* variables)."""
    return dg.RetryPolicy(
        max_retries=int(os.environ.get("REFRESH_ASSETS_RETRY_MAX", "2")),
        delay=float(os.environ.get("REFRESH_ASSETS_RETRY_DELAY_SECONDS", "10")),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def partitioned_job(name: str, selection: dg.AssetSelection, description: str) -> dg.UnresolvedAssetJobDefinition:
    """An asset job (daily-partitioned, inferred from its assets) with the step retry policy, the executor
    REFRESH_ASSETS_EXECUTOR selects (executors.py), and a `refresh_assets/kind` tag the run queue limits
    (dagster.yaml)."""
    return dg.define_asset_job(
        name=f"{name}_job",
        selection=selection,
        description=description,
        op_retry_policy=retry_policy_from_env(),
        executor_def=executor_from_env(),
        tags={"refresh_assets/kind": name},
    )


# Selecting the dataset asset selects its checks too (training_dataset_checks): they are blocking, so a
# refused dataset runs no candidate, comparison or champion step.
REFRESH_SELECTION = dg.AssetSelection.assets(DATASET, *candidate_assets, COMPARISON, CHAMPION)

refresh_job = partitioned_job("refresh", REFRESH_SELECTION,
                              "Dataset -> candidates -> comparison -> champion for one refresh date.")
propagation_job = partitioned_job("propagation", dg.AssetSelection.assets(SHADOW, SCORES),
                                  "After a promotion: shadow-test new vs previous champion on D's batch, then score D.")
scoring_job = partitioned_job("scoring", dg.AssetSelection.assets(SCORES, DRIFT),
                              "Score D's population with the champion in force, and check it for drift (daily).")
