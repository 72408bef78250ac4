"""Propagation: test a new champion against the previous one on D's batch, then score D's population.

Both read D's ``scoring_population`` (built daily, one snapshot), never a refresh's dataset: scoring runs every
day, a refresh once a week.
"""


import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.assets.champion import CHAMPION
from refresh_assets.assets.population import POPULATION, POPULATION_FILE
from refresh_assets.audit import StepAudit, output_metadata, read_input
from refresh_assets.config import ScoringConfig
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry

SHADOW = "champion_shadow_test"
SCORES = "production_scores"


@dg.asset(
    name=SHADOW,
    partitions_def=daily_partitions,
    deps=[POPULATION, CHAMPION],
    group_name="propagation",
    description="Scores D's batch with the previous and the new champion and records how they differ.",
)
@retry_only_transient
def champion_shadow_test(context: dg.AssetExecutionContext, config: ScoringConfig, artifacts: ArtifactStore,
                         registry: Registry) -> dg.MaterializeResult:
    from refresh_assets.core.object_store import read_output_json, read_output_parquet
    from refresh_assets.core.scoring import compare_scores, predict_scores

    audit = StepAudit(context, SHADOW, config)
    store = artifacts.store()
    data_dir, data_manifest = read_input(audit, store, POPULATION)
    champ_dir, champ_manifest = read_input(audit, store, CHAMPION)
    champion = read_output_json(champ_dir, "champion.json", champ_manifest)
    batch = read_output_parquet(data_dir, POPULATION_FILE, data_manifest)
    models = registry.registry()
    previous = champion.get("previous_version")
    if previous is None:  # a first champion: nothing to compare with, so the batch is not scored here
        comparison = {"previous_version": None, "new_version": champion["version"], "rows": int(len(batch)),
                      "note": "no previous champion: nothing to compare against"}
        audit.log(f"v{champion['version']} is the first champion: no shadow comparison")
    else:
        old_scores = predict_scores(models.load_model(previous), batch)
        new_scores = predict_scores(models.load_model(champion["version"]), batch)
        comparison = {"previous_version": previous, "new_version": champion["version"],
                      **compare_scores(old_scores, new_scores, config.top_k_share)}
        audit.log(
            f"v{previous} -> v{champion['version']} on {len(batch)} rows: rank correlation "
            f"{comparison['spearman_rank_correlation']:.3f}, top-{config.top_k_share:.0%} overlap "
            f"{comparison['top_k_overlap']:.3f}, mean score shift {comparison['mean_score_shift']:+.4f}"
        )
    with store.stage(SHADOW, audit.partition_key, audit.run_id) as out:
        out.write_json("shadow_test.json", comparison)
        final = audit.commit(out, {"shadow_test": comparison})
    meta = {k: v for k, v in comparison.items() if isinstance(v, (int, float, str)) and v is not None}
    if previous is not None:
        meta["charts"] = dg.MetadataValue.md(shadow_charts(audit, old_scores, new_scores, previous,
                                                           champion["version"]))
    return dg.MaterializeResult(metadata={**output_metadata(final), **meta})


def shadow_charts(audit: StepAudit, old_scores, new_scores, previous: int, new: int) -> str:
    """Old vs new champion's scores of the same batch, as an image; one that cannot be drawn says why."""
    from refresh_assets.core import charts

    try:
        return (f"**v{previous} vs v{new} on the same batch** (each point a row; on the diagonal they agree)\n\n"
                + charts.shadow_chart(old_scores, new_scores, f"v{previous} (old)", f"v{new} (new)"))
    except Exception as error:  # noqa: BLE001 - see the docstring
        audit.log(f"charts not drawn: {type(error).__name__}: {error}", "warning")
        return f"charts not drawn: {type(error).__name__}: {error}"


@dg.asset(
    name=SCORES,
    partitions_def=daily_partitions,
    deps=[POPULATION, CHAMPION],
    group_name="propagation",
    kinds={"parquet"},
    description="Churn scores of D's scoring population with the champion in force (risk rank, top-k flag).",
)
@retry_only_transient
def production_scores(context: dg.AssetExecutionContext, config: ScoringConfig, artifacts: ArtifactStore,
                      registry: Registry) -> dg.MaterializeResult:
    from refresh_assets.core.object_store import read_output_parquet
    from refresh_assets.core.scoring import score_batch

    audit = StepAudit(context, SCORES, config)
    store = artifacts.store()
    data_dir, data_manifest = read_input(audit, store, POPULATION)
    models = registry.registry()
    champion = models.current_champion()
    if champion is None:
        raise RuntimeError("no champion yet: run refresh_job for a partition first")
    batch = read_output_parquet(data_dir, POPULATION_FILE, data_manifest)
    with audit.timed("score"):
        scores = score_batch(models.load_model(champion.version), batch, config.top_k_share, champion.version)
    audit.log(f"scored {len(scores)} players with champion v{champion.version} ({champion.algorithm}); "
              f"mean score {scores['churn_score'].mean():.4f}, {int(scores['top_k'].sum())} flagged")
    with store.stage(SCORES, audit.partition_key, audit.run_id) as out, audit.timed("write"):
        out.write_parquet("scores.parquet", scores)
        final = audit.commit(out, {"champion_version": champion.version, "champion_sha256": champion.model_sha256,
                                   "rows": int(len(scores))})
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            "rows": int(len(scores)),
            "champion_version": champion.version,
            "mean_score": float(scores["churn_score"].mean()),
            "flagged": int(scores["top_k"].sum()),
        }
    )
