"""The daily scoring population: who is scored on D, built from the query script for the one snapshot D.

Scoring and drift run every day while the model is rebuilt weekly, so they cannot read a refresh's dataset
(only a refresh of D builds one). This asset costs one snapshot, not a training window, and stores the same
rows, dtypes and hash as the scoring frame a refresh of D builds (``features.build_scoring_population``), so
both paths score the same people. Its rules (``validation.POPULATION_RULES``) judge it before it becomes the
partition's current population: a refused one is kept for inspection and never scored.
"""

import datetime as dt

import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.assets.dataset import (
    TRANSIENT_RETRIES,
    TRANSIENT_WAIT_SECONDS,
    champion_feature_schema,
    champion_training_dir,
)
from refresh_assets.audit import StepAudit, output_metadata
from refresh_assets.config import PopulationConfig
from refresh_assets.core import features
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry, Warehouse

POPULATION = "scoring_population"
POPULATION_FILE = "scoring.parquet"


@dg.asset(
    name=POPULATION,
    partitions_def=daily_partitions,
    group_name="scoring",
    kinds={"duckdb", "parquet"},
    description="D's scoring population (the query script for the one snapshot D, no label), checked against "
                "the features the champion was trained on; what production_scores, drift_report and the "
                "shadow test read.",
)
@retry_only_transient
def scoring_population(context: dg.AssetExecutionContext, config: PopulationConfig, warehouse: Warehouse,
                       artifacts: ArtifactStore, registry: Registry) -> dg.MaterializeResult:
    from refresh_assets.core.artifacts import frame_hash
    from refresh_assets.core.validation import PopulationUnderTest, feature_schema, validate_population

    audit = StepAudit(context, POPULATION, config)
    as_of = dt.date.fromisoformat(context.partition_key)
    store = artifacts.store()
    try:
        with audit.timed("query"), warehouse.connect() as con:
            population = features.build_scoring_population(con, as_of, config.label_horizon_days,
                                                           warehouse.query_path, log=audit.log)
    except Exception as exc:
        if not features.is_transient(exc):
            raise
        audit.log(f"transient warehouse error, step retry requested: {exc}", "warning")
        raise dg.RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=TRANSIENT_WAIT_SECONDS) from exc
    champion = registry.registry().current_champion()
    expected = None
    if champion is not None:
        reference_dir = champion_training_dir(store, champion)
        audit.record_input(f"training_dataset@{champion.partition_key}", reference_dir,
                           store.read_manifest(reference_dir))
        expected = champion_feature_schema(store, champion)
    results = validate_population(PopulationUnderTest(
        population.scoring, as_of, population.stats["rows_after_as_of_date"], expected), config.limits())
    population_hash = frame_hash(population.scoring)
    with store.stage(POPULATION, context.partition_key, audit.run_id) as out, audit.timed("write"):
        out.write_parquet(POPULATION_FILE, population.scoring)
        final = audit.commit(out, {
            "population_hash": population_hash,
            "query_sha256": population.query_sha256,
            "query_path": warehouse.query_path or "packaged:churn_features.sql",
            "source": warehouse.location,
            "stats": population.stats,
            "schema": feature_schema(population.scoring),
            "checked_against": None if champion is None else {"champion_version": champion.version,
                                                              "dataset_partition": champion.partition_key},
            "rules": {r.rule: {"passed": r.passed, "message": r.message} for r in results},
        }, publish=False)
    refused = [f"{r.rule}: {r.message}" for r in results if not r.passed]
    if refused:
        for line in refused:
            audit.context.log.error(f"scoring population check failed for {context.partition_key}: {line}")
        previous = store.current(POPULATION, context.partition_key)
        kept = (f"the previous accepted population ({previous.name}) stays current" if previous is not None
                else "nothing is scored for this date")
        # Not retried: the same data breaks the same rule every time.
        raise dg.Failure(
            description=f"{POPULATION} for {context.partition_key} refused by {len(refused)} rule(s): "
                        + "; ".join(refused) + f". The refused output {final} is kept for inspection; {kept}.",
            allow_retries=False,
        )
    store.publish(POPULATION, context.partition_key, final)
    stats = population.stats["scoring"]
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            "rows": stats["rows"],
            "entities": stats["entities"],
            "features": len(population.scoring.columns) - len(features.KEY_COLUMNS),
            "population_hash": population_hash,
            "query_sha256": population.query_sha256,
            "checked_against_champion": champion.version if champion is not None else -1,
            "rules": dg.MetadataValue.md("\n".join(f"- {'✓' if r.passed else '✗'} `{r.rule}`: {r.message}"
                                                   for r in results)),
        },
        data_version=dg.DataVersion(population_hash[:16]),
    )
