"""Step 3: score every candidate and the current champion on the same out-of-time holdout and decide."""


import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.assets.candidates import MODEL_FILE, candidate_asset_name, failed_training
from refresh_assets.assets.dataset import DATASET
from refresh_assets.audit import StepAudit, output_metadata, read_input
from refresh_assets.config import ComparisonConfig
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry

COMPARISON = "model_comparison"
DECISION_FILE = "decision.json"


def champion_label(version: int) -> str:
    return f"champion_v{version}"


def comparison_charts(audit: StepAudit, y, predictions: dict, champion_name: str | None, decision) -> str:
    """ROC, precision-recall and calibration of every model, and the gates against their margins, as images.
    A chart that cannot be drawn says why instead: pictures never fail a decision that is already recorded."""
    from refresh_assets.core import charts

    try:
        return "\n\n".join([
            "**Holdout curves** (every candidate and the champion, same holdout)",
            charts.comparison_chart(y, predictions, champion_name),
            "**Gates**: each gate's estimate and interval against its margin",
            charts.gates_chart(charts.gate_rows(decision)),
        ])
    except Exception as error:  # noqa: BLE001 - see the docstring
        audit.log(f"charts not drawn: {type(error).__name__}: {error}", "warning")
        return f"charts not drawn: {type(error).__name__}: {error}"


def trend_figures(metrics: dict, challenger: str | None, champion_name: str | None, y) -> dict[str, float]:
    """The comparison's figures worth watching week by week, as float metadata (Dagster plots them)."""
    figures: dict[str, float] = {"holdout_rows": int(len(y)), "holdout_label_rate": float(y.mean())}
    for role, name in (("champion", champion_name), ("best_challenger", challenger)):
        for metric in ("roc_auc", "brier"):
            value = (metrics.get(name) or {}).get(metric) if name else None
            if isinstance(value, (int, float)) and value == value:
                figures[f"holdout_{metric}_{role}"] = float(value)
    return figures


@dg.asset(
    name=COMPARISON,
    partitions_def=daily_partitions,
    deps=[DATASET, *[candidate_asset_name(a) for a in ("logreg", "random_forest", "hist_gb", "ensemble")]],
    group_name="refresh",
    kinds={"scikitlearn"},
    description="Every candidate and the current champion on the same holdout; paired bootstrap; the decision.",
)
@retry_only_transient
def model_comparison(context: dg.AssetExecutionContext, config: ComparisonConfig, artifacts: ArtifactStore,
                     registry: Registry) -> dg.MaterializeResult:
    from refresh_assets.serving.report_links import report_url  # not reports.py: no FastAPI in a refresh
    from refresh_assets.core import evaluate, report
    from refresh_assets.core.artifacts import load_model
    from refresh_assets.core.object_store import read_output_parquet
    from refresh_assets.core.scoring import predict_scores

    audit = StepAudit(context, COMPARISON, config)
    store = artifacts.store()
    data_dir, data_manifest = read_input(audit, store, DATASET)
    holdout = read_output_parquet(data_dir, "holdout.parquet", data_manifest)
    y = holdout["label"].to_numpy()
    audit.log(f"holdout: {len(holdout)} rows, label rate {y.mean():.4f}")

    predictions: dict[str, object] = {}
    challengers: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    with audit.timed("score_candidates"):
        for algorithm in [a.value if hasattr(a, "value") else a for a in config.algorithms]:
            name = candidate_asset_name(algorithm)
            out_dir = store.current(name, audit.partition_key)
            if out_dir is None:
                skipped[algorithm] = "not materialized for this partition"
                continue
            manifest = store.read_manifest(out_dir)
            if manifest.get("dataset_hash") != data_manifest["dataset_hash"]:
                skipped[algorithm] = "trained on another version of this partition's dataset"
                continue
            if failed_training(manifest):
                skipped[algorithm] = failed_training(manifest)
                continue
            audit.record_input(name, out_dir, manifest)
            model = load_model(out_dir / MODEL_FILE, manifest["model_sha256"])
            predictions[algorithm] = predict_scores(model, holdout)
            challengers[algorithm] = {"output_dir": str(out_dir), "model_sha256": manifest["model_sha256"],
                                      "cv_score_roc_auc": manifest.get("cv_score_roc_auc"),
                                      "best_params": manifest.get("best_params")}
    for algorithm, why in skipped.items():
        audit.log(f"candidate {algorithm} left out: {why}", "warning")
    needed = config.required_candidates()
    if len(predictions) < needed:
        # Too few candidates to call it a comparison: no decision, so the champion stays as it is.
        raise RuntimeError(
            f"only {len(predictions)} candidate(s) available for {audit.partition_key} "
            f"({sorted(predictions) or 'none'}), fewer than min_candidates={needed}; refusing to decide. "
            f"Left out: " + "; ".join(f"{a}: {why}" for a, why in skipped.items())
        )

    champion = registry.registry().current_champion()
    champion_name = None
    if champion is not None:
        champion_name = champion_label(champion.version)
        with audit.timed("score_champion"):
            predictions[champion_name] = predict_scores(registry.registry().load_model(champion.version), holdout)
        audit.log(f"current champion: v{champion.version} ({champion.algorithm}, from {champion.partition_key})")
    else:
        audit.log("no champion yet: the best challenger will be promoted")

    with audit.timed("evaluate"):
        metrics = {name: evaluate.classification_metrics(y, p, top_k=config.top_k_share)
                   for name, p in predictions.items()}
        decision = evaluate.decide(
            y, predictions, champion_name, min_improvement=config.min_improvement,
            n_boot=config.bootstrap_samples, alpha=1 - config.confidence, seed=config.random_seed,
            extra_gates=evaluate.guardrail_gates(config.guardrails(), holdout),
            # the challenger is chosen on data the holdout gates never see (docs/DECISIONS.md: the winner's curse)
            selection_scores=({name: info.get("cv_score_roc_auc") for name, info in challengers.items()}
                              if config.select_challenger_by == "cv_score" else None),
        )
        table = evaluate.comparison_table(metrics, champion_name)
        markdown = evaluate.comparison_markdown(table, decision)
        if skipped:
            markdown += "\n\n**Candidates left out:**\n" + "\n".join(f"- {a}: {why}" for a, why in skipped.items())
    audit.log(decision.reason)

    winner = challengers[decision.challenger] if decision.challenger in challengers else None
    decision_record = {
        "partition": audit.partition_key,
        "decision": decision.to_dict(),
        "promote": bool(decision.promote),
        "challenger": decision.challenger,
        "challenger_output": winner,
        "champion_version": champion.version if champion else None,
        "champion_model_sha256": champion.model_sha256 if champion else None,
        "metrics": metrics,
        "skipped_candidates": skipped,
        "dataset_hash": data_manifest["dataset_hash"],
    }
    with store.stage(COMPARISON, audit.partition_key, audit.run_id) as out, audit.timed("write"):
        out.write_json(DECISION_FILE, decision_record)
        out.write_text("report.md", markdown)
        table.to_csv(out.path / "metrics.csv")
        out.add_file("metrics.csv")
        scored = holdout[["entity_id", "as_of_date", "label"]].copy()
        for name, p in predictions.items():
            scored[f"score_{name}"] = p
        out.write_parquet("holdout_scores.parquet", scored)
        report.write_comparison_html(out.path / "report.html", y, predictions, markdown,
                                     title=f"Model comparison for {audit.partition_key}")
        out.add_file("report.html")
        final = audit.commit(out, {"decision": decision_record["decision"], "promote": decision_record["promote"]})
    boot = decision.bootstrap
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            # numbers, so the asset's Plots tab draws them across partitions (absent when there is nothing to say)
            **trend_figures(metrics, decision.challenger, champion_name, y),
            "charts": dg.MetadataValue.md(comparison_charts(audit, y, predictions, champion_name, decision)),
            "report_html": dg.MetadataValue.url(report_url(COMPARISON, audit.partition_key, final.name)),
            "report": dg.MetadataValue.md(markdown),
            "report_file": dg.MetadataValue.path(str(final / "report.html")),
            "decision": "promote" if decision.promote else "keep",
            "promote": bool(decision.promote),
            "best_challenger": decision.challenger or "",
            "challenger_chosen": decision.selection_note,
            "candidates_left_out": ", ".join(f"{a} ({why})" for a, why in skipped.items()) or "none",
            "champion_version": champion.version if champion else -1,
            "reason": decision.reason,
            **({"improvement_ci_lower": float(boot.lower), "improvement_ci_upper": float(boot.upper)} if boot else {}),
            "deciding_gate": decision.deciding_gate,
            "gates_failed": ", ".join(g.name for g in decision.gates if g.gated and not g.passed) or "none",
            **({"delong_p_value": float(decision.delong.p_value)} if decision.delong else {}),
        },
    )
