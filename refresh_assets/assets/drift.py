"""Monitoring: does D's scoring population still look like the data the champion was trained on?"""

import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.assets.champion import CHAMPION
from refresh_assets.assets.dataset import DATASET, champion_training_dir
from refresh_assets.assets.population import POPULATION, POPULATION_FILE
from refresh_assets.audit import MissingInputError, StepAudit, output_metadata, read_input
from refresh_assets.config import DriftConfig
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry

DRIFT = "drift_report"
DRIFT_CHECK = "no_dataset_drift"
NON_FEATURES = ("entity_id", "as_of_date", "label")


def _with_reasons(result) -> list[str]:
    """Drifted columns with the checks that flagged them, e.g. 'spend_28d (null_share)'."""
    return [f"{c.column} ({', '.join(c.drifted_by)})" for c in result.columns if c.column in result.drifted_columns]


def drift_charts(audit: StepAudit, result, reference, current) -> str:
    """Per-column drift scores against their thresholds and the distributions of the drifted columns, as an
    image; a chart that cannot be drawn says why instead of failing the check."""
    from refresh_assets.core import charts

    try:
        return ("**Drift per column** (score against its threshold) and the drifted columns' distributions\n\n"
                + charts.drift_chart(result.columns, reference, current))
    except Exception as error:  # noqa: BLE001 - see the docstring
        audit.log(f"charts not drawn: {type(error).__name__}: {error}", "warning")
        return f"charts not drawn: {type(error).__name__}: {error}"


@dg.asset(
    name=DRIFT,
    partitions_def=daily_partitions,
    deps=[POPULATION, CHAMPION],
    group_name="monitoring",
    kinds={"evidently"},
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=DRIFT, blocking=False,
                                   description="Warns when the scoring population drifted from the champion's "
                                               "training data (share of drifted columns >= drift_share; a column "
                                               "drifts by Evidently's distance, or when its NULL share or its most "
                                               "common value's share jumped).")],
    description="Evidently data drift: D's scoring population vs the current champion's training data.",
)
@retry_only_transient
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, artifacts: ArtifactStore,
                 registry: Registry) -> dg.MaterializeResult:
    from refresh_assets.serving.report_links import report_url  # not reports.py: no FastAPI in a refresh
    from refresh_assets.core import drift
    from refresh_assets.core.object_store import read_output_parquet

    audit = StepAudit(context, DRIFT, config)
    store = artifacts.store()
    data_dir, data_manifest = read_input(audit, store, POPULATION)
    champion = registry.registry().current_champion()
    if champion is None:
        raise MissingInputError("no champion yet: there is no training data to compare with")
    reference_dir = champion_training_dir(store, champion)
    reference_manifest = store.read_manifest(reference_dir)
    audit.record_input(f"{DATASET}@{champion.partition_key}", reference_dir, reference_manifest)
    current = read_output_parquet(data_dir, POPULATION_FILE, data_manifest)
    reference = read_output_parquet(reference_dir, "train.parquet", reference_manifest)
    # the champion's features: a column the population has and the champion was not trained on is not its drift
    columns = [c for c in reference.columns if c not in NON_FEATURES]
    audit.log(f"drift check: {len(current)} scoring rows at {audit.partition_key} vs {len(reference)} training rows "
              f"of champion v{champion.version} ({champion.partition_key}), {len(columns)} columns")
    with store.stage(DRIFT, audit.partition_key, audit.run_id) as out:
        with audit.timed("evidently"):
            result = drift.check_drift(reference, current, columns, config.settings(),
                                       html_path=out.path / "drift_report.html")
        out.add_file("drift_report.html")
        out.write_json("drift.json", result.to_dict())
        # judged columns only: one with too few values is shown in the report but counts for nothing, here too
        drifted = list(result.drifted_columns)
        judged = sum(c.judged for c in result.columns)
        audit.log(f"dataset drift: {result.dataset_drift} ({len(drifted)}/{judged} judged columns drifted, "
                  f"share {result.drift_share:.2f} vs threshold {result.share_threshold:.2f}): "
                  f"{_with_reasons(result)}")
        final = audit.commit(out, {"drift": result.to_dict(), "champion_version": champion.version,
                                   "reference_partition": champion.partition_key})
    figures = {"dataset_drift": result.dataset_drift, "drift_share": round(result.drift_share, 4),
               "drifted_columns": len(drifted), "columns_checked": len(result.columns)}
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            **figures,
            # what drift_sensor compares to tell a new drift from the same one persisting
            "drifted_column_names": dg.MetadataValue.json(drifted),
            "share_threshold": result.share_threshold,
            "charts": dg.MetadataValue.md(drift_charts(audit, result, reference, current)),
            "report_html": dg.MetadataValue.url(report_url(DRIFT, audit.partition_key, final.name)),
            "columns": dg.MetadataValue.md(result.markdown_table()),
            "report_file": dg.MetadataValue.path(str(final / "drift_report.html")),
            "current_rows": int(result.current_rows),
            "reference_rows": int(result.reference_rows),
            "champion_version": champion.version,
            "reference_partition": champion.partition_key,
            "sampled_rows": f"{result.sampled_rows[0]} reference / {result.sampled_rows[1]} current",
            "seconds": round(result.seconds, 2),
        },
        check_results=[dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=not result.dataset_drift,
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"{len(drifted)} of {judged} judged columns drifted: "
                         f"{', '.join(_with_reasons(result)) or 'none'}"),
            metadata=figures,
        )],
    )
