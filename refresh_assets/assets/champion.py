"""Step 4: the champion in force after D's decision; a promotion updates the registry atomically.

A rollback is the same asset materialized by ``rollback_job`` with ``rollback_to_version`` set: the registry
records it, the UI shows it as D's champion (tagged as a rollback), and ``promotion_sensor`` chains the same
propagation as for a promotion, so production scores follow the registry.
"""


import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.assets.comparison import COMPARISON, DECISION_FILE
from refresh_assets.audit import StepAudit, output_metadata, read_input
from refresh_assets.config import ChampionConfig
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry

CHAMPION = "champion_model"
ROLLBACK_JOB = "rollback_job"


@dg.asset(
    name=CHAMPION,
    partitions_def=daily_partitions,
    deps=[COMPARISON],
    group_name="refresh",
    kinds={"duckdb"},
    description=(
        "The champion in force after D's decision. Always materialized: metadata says promoted true/false, the "
        "version and why; its data version changes only when the champion does (a promotion or a rollback)."
    ),
)
@retry_only_transient
def champion_model(context: dg.AssetExecutionContext, config: ChampionConfig, artifacts: ArtifactStore,
                   registry: Registry) -> dg.MaterializeResult:
    audit = StepAudit(context, CHAMPION, config)
    store = artifacts.store()
    if context.run.job_name == ROLLBACK_JOB or config.rollback_to_version:
        return rollback_champion(context, audit, config, store, registry.registry())
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
        "action": "promote" if promoted else "keep",
        "promoted": promoted,
        "version": champion.version,
        "algorithm": champion.algorithm,
        # the champion this decision was compared with, which a promotion replaced
        "previous_version": compared if promoted else None,
        "champion_partition": champion.partition_key,
        "model_sha256": champion.model_sha256,
        "reason": record["decision"]["reason"],
    }
    return champion_result(audit, store, summary, models)


#: comparisons read for the card's trend (the most recent ones since the promotion)
CARD_COMPARISONS = 26


def champion_card_markdown(store, models, version: int, partition_key: str) -> str:
    """The champion's model card (core/model_card.py), from the registry and the comparisons in the store.

    Never fails the step: a card that cannot be built says why instead (the decision is already recorded)."""
    from refresh_assets.core import charts, model_card
    from refresh_assets.core.object_store import read_output_json

    try:
        champion = models.get(version)
        names = sorted(child.name for child in (store.root / COMPARISON).iterdir()
                       if not child.name.startswith(".") and champion.partition_key <= child.name <= partition_key)
        recent = names[-CARD_COMPARISONS:]
        if champion.partition_key in names and champion.partition_key not in recent:
            recent = [champion.partition_key, *recent]  # the promotion's own comparison: its gates
        comparisons = []
        for name in recent:
            output = store.current(COMPARISON, name)
            if output is not None:
                comparisons.append((name, read_output_json(output, DECISION_FILE, store.read_manifest(output))))
        decision = dict(comparisons).get(champion.partition_key)
        features = None
        winner = (decision or {}).get("challenger_output") or {}
        if winner.get("output_dir"):
            from refresh_assets.core.object_store import as_upath

            try:
                features = store.read_manifest(as_upath(winner["output_dir"])).get("feature_importances")
            except Exception:  # noqa: BLE001 - the candidate's folder was cleaned up: the card goes without
                features = None
        trend = model_card.champion_trend(comparisons, version, champion.algorithm, champion.partition_key)
        image = (charts.trend_chart(trend, f"v{version} holdout ROC AUC by partition", "ROC AUC")
                 if len(trend) > 1 else None)
        return model_card.champion_card(champion.to_dict(), decision, trend, features, models.history(), image)
    except Exception as error:  # noqa: BLE001 - see the docstring
        return f"model card unavailable: {type(error).__name__}: {error}"


def champion_result(audit: StepAudit, store, summary: dict, models=None) -> dg.MaterializeResult:
    """Commit ``champion.json`` and say in the metadata what changed (what promotion_sensor reads)."""
    with store.stage(CHAMPION, audit.partition_key, audit.run_id) as out:
        out.write_json("champion.json", summary)
        final = audit.commit(out, summary)
    card = (champion_card_markdown(store, models, summary["version"], audit.partition_key)
            if models is not None else None)
    if card is not None and card.startswith("model card unavailable"):
        audit.log(card, "warning")
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            **({"model_card": dg.MetadataValue.md(card)} if card else {}),
            "action": summary["action"],
            "promoted": summary["promoted"],
            "rolled_back": summary["action"] == "rollback",
            "version": summary["version"],
            "previous_version": summary["previous_version"] if summary["previous_version"] is not None else -1,
            "algorithm": summary["algorithm"],
            "reason": summary["reason"],
            "model_sha256": summary["model_sha256"],
        },
        data_version=dg.DataVersion(f"champion-v{summary['version']}"),
    )


def rollback_champion(context, audit: StepAudit, config: ChampionConfig, store, models) -> dg.MaterializeResult:
    """Make ``config.rollback_to_version`` champion again (a 'rollback' event in the registry) and record it as
    D's champion, with the version rolled back from as ``previous_version`` (the shadow test compares the two)."""
    if context.run.job_name != ROLLBACK_JOB:
        raise dg.Failure(description=f"rollback_to_version is set in {context.run.job_name}: a rollback runs as "
                                     f"{ROLLBACK_JOB} (`refresh-assets rollback`); a refresh decides by its comparison",
                         allow_retries=False)
    target = config.rollback_to_version
    if not target:
        raise dg.Failure(description=f"{ROLLBACK_JOB} needs ops.{CHAMPION}.config.rollback_to_version: the version "
                                     "to make champion again (`refresh-assets champion` lists them)",
                         allow_retries=False)
    before = models.current_champion()
    events = models.events()
    if events and events[-1].run_id == audit.run_id and events[-1].version == target:
        # a re-executed step whose rollback already landed: record it, do not roll back twice
        previous = events[-2].version if len(events) > 1 else None
        champion = before
        audit.log(f"v{target} is already champion by this run's rollback; nothing to do")
    else:
        from refresh_assets.core.registry import UnknownModelVersionError

        if before is not None and before.version == target:
            raise dg.Failure(description=f"v{target} is already the champion: nothing to roll back "
                                         "(`refresh-assets champion` shows the history)", allow_retries=False)
        reason = config.reason or f"rollback to v{target}"
        try:
            with audit.timed("rollback"):
                champion = models.rollback(target, run_id=audit.run_id, reason=reason,
                                           partition_key=audit.partition_key)
        except UnknownModelVersionError as exc:
            raise dg.Failure(description=f"cannot roll back: {exc}", allow_retries=False) from exc
        previous = before.version if before is not None else None
        audit.log(f"rolled back from v{previous} to v{champion.version} ({champion.algorithm}): {reason}")
    summary = {
        "action": "rollback",
        "promoted": False,
        "version": champion.version,
        "algorithm": champion.algorithm,
        "previous_version": previous,
        "champion_partition": champion.partition_key,
        "model_sha256": champion.model_sha256,
        "reason": config.reason or f"rollback to v{champion.version}",
    }
    return champion_result(audit, store, summary, models)
