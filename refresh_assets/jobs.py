"""The jobs: the weekly refresh, the propagation a promotion (or a rollback) chains to, daily scoring, and the
rollback itself."""

from __future__ import annotations

import os

import dagster as dg

from refresh_assets.assets.candidates import candidate_assets
from refresh_assets.assets.champion import CHAMPION, ROLLBACK_JOB
from refresh_assets.assets.comparison import COMPARISON
from refresh_assets.assets.dataset import DATASET
from refresh_assets.assets.drift import DRIFT
from refresh_assets.assets.population import POPULATION
from refresh_assets.assets.realtime import REALTIME
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


#: Run tag of the jobs that change the champion (refresh, rollback): dagster.yaml's run queue runs one at a time.
CHAMPION_WRITER_TAG = "refresh_assets/champion_writer"


def partitioned_job(name: str, selection: dg.AssetSelection, description: str,
                    tags: dict | None = None) -> dg.UnresolvedAssetJobDefinition:
    """An asset job (daily-partitioned, inferred from its assets) with the step retry policy, the executor
    REFRESH_ASSETS_EXECUTOR selects (executors.py), and a `refresh_assets/kind` tag the run queue limits
    (dagster.yaml)."""
    return dg.define_asset_job(
        name=f"{name}_job",
        selection=selection,
        description=description,
        op_retry_policy=retry_policy_from_env(),
        executor_def=executor_from_env(),
        tags={"refresh_assets/kind": name, **(tags or {})},
    )


# Selecting the dataset asset selects its checks too (training_dataset_checks): they are blocking, so a
# refused dataset runs no candidate, comparison or champion step.
REFRESH_SELECTION = dg.AssetSelection.assets(DATASET, *candidate_assets, COMPARISON, CHAMPION)

refresh_job = partitioned_job("refresh", REFRESH_SELECTION,
                              "Dataset -> candidates -> comparison -> champion for one refresh date.",
                              tags={CHAMPION_WRITER_TAG: "true"})
propagation_job = partitioned_job("propagation", dg.AssetSelection.assets(POPULATION, SHADOW, SCORES, REALTIME),
                                  "After a promotion or a rollback: D's population, the shadow test of new vs "
                                  "previous champion on it, D's scores, then the real-time scorer, proven by its "
                                  "conformance test before the scoring service may swap to it.")
scoring_job = partitioned_job("scoring", dg.AssetSelection.assets(POPULATION, SCORES, DRIFT),
                              "Daily: D's scoring population, scored with the champion in force and checked for drift.")
rollback_job = partitioned_job(ROLLBACK_JOB.removesuffix("_job"), dg.AssetSelection.assets(CHAMPION),
                               "Make an earlier registry version champion again for D (launchpad: "
                               "ops.champion_model.config.rollback_to_version, reason); propagation follows.",
                               tags={CHAMPION_WRITER_TAG: "true"})
