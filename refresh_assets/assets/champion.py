"""Step 4: the champion in force after D's decision; a promotion updates the registry atomically."""


import dagster as dg

from refresh_assets.assets.comparison import COMPARISON, DECISION_FILE
from refresh_assets.audit import StepAudit, output_metadata, read_input
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry

CHAMPION = "champion_model"


@dg.asset(
    name=CHAMPION,
    partitions_def=daily_partitions,
    deps=[COMPARISON],
    group_name="refresh",
    kinds={"duckdb"},
    description=(
        "The champion in force after D's decision. Always materialized: metadata says promoted true/false, the "
        "version and why; its data version changes only on a promotion."
    ),
)
def champion_model(context: dg.AssetExecutionContext, artifacts: ArtifactStore,
                   registry: Registry) -> dg.MaterializeResult:
    audit = StepAudit(context, CHAMPION)
    store = artifacts.store()
    comparison_dir, comparison_manifest = read_input(audit, store, COMPARISON)
    from refresh_assets.core.object_store import as_upath, read_output_json

    record = read_output_json(comparison_dir, DECISION_FILE, comparison_manifest)
    models = registry.registry()
    before = models.current_champion()
    compared = record.get("champion_version")
    winner = record.get("challenger_output") or {}
    already_promoted = (record["promote"] and before is not None
                        and before.model_sha256 == winner.get("model_sha256")
                        and before.partition_key == audit.partition_key)
    if record["promote"] and not already_promoted and (before.version if before else None) != compared:
        # Another run changed the champion after this comparison: promoting now would skip the comparison
        # with the champion actually in force. Fail without touching anything; re-run the refresh.
        raise RuntimeError(
            f"the champion changed since the comparison (compared with "
            f"{'v' + str(compared) if compared else 'no champion'}, now "
            f"{'v' + str(before.version) if before else 'none'}): re-run model_comparison and champion_model"
        )
    promoted = False
    if already_promoted:
        # A re-executed step after a promotion that already landed: do not promote the same model twice.
        audit.log(f"v{before.version} is already this partition's promoted model; nothing to do")
        champion = before
        promoted = True
    elif record["promote"]:
        with audit.timed("promote"):
            champion = models.promote(
                as_upath(winner["output_dir"]) / "model.skops",
                algorithm=record["challenger"],
                partition_key=audit.partition_key,
                metrics=record["metrics"][record["challenger"]],
                dataset_hash=record["dataset_hash"],
                run_id=audit.run_id,
                reason=record["decision"]["reason"],
                expected_sha256=winner["model_sha256"],
            )
        promoted = True
        audit.log(f"promoted {champion.algorithm} as v{champion.version}: {record['decision']['reason']}")
    else:
        champion = before
        audit.log(f"kept v{before.version} ({before.algorithm}): {record['decision']['reason']}")
    summary = {
        "promoted": promoted,
        "version": champion.version,
        "algorithm": champion.algorithm,
        # the champion this decision was compared with, which a promotion replaced
        "previous_version": compared if promoted else None,
        "champion_partition": champion.partition_key,
        "model_sha256": champion.model_sha256,
        "reason": record["decision"]["reason"],
    }
    with store.stage(CHAMPION, audit.partition_key, audit.run_id) as out:
        out.write_json("champion.json", summary)
        final = audit.commit(out, summary)
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            "promoted": promoted,
            "version": champion.version,
            "previous_version": summary["previous_version"] if summary["previous_version"] is not None else -1,
            "algorithm": champion.algorithm,
            "reason": summary["reason"],
            "model_sha256": champion.model_sha256,
        },
        data_version=dg.DataVersion(f"champion-v{champion.version}"),
    )
