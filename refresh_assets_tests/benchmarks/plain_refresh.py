"""The refresh benchmark's baseline: the same refresh as a plain Python script, no Dagster.

It calls the same core functions with the same settings and writes the same files (the three dataset
frames, four skops models, the decision, the reports, the holdout scores, the registry promotion, the
scoring population, the production scores, the real-time scorer and its conformance test run), so the
only difference left with a Dagster run is the orchestration: Dagster's own work, the audit record,
manifests and file hashes, and reading inputs back from disk between steps.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

BASE = ("logreg", "random_forest", "hist_gb")


def plain_refresh(warehouse: str | Path, workdir: str | Path, partition: str, settings: dict[str, Any]) -> dict:
    """Dataset -> candidates -> comparison -> champion -> population -> scores for one partition, in this process."""
    import pandas as pd

    from refresh_assets.core import evaluate, features, models, report
    from refresh_assets.core.artifacts import atomic_write_json, atomic_write_parquet, atomic_write_text, save_model
    from refresh_assets.core.registry import ModelRegistry
    from refresh_assets.core.scoring import predict_scores, score_batch

    work = Path(workdir)
    training, comparison, scoring = settings["training"], settings["comparison"], settings["scoring"]
    spec = features.DatasetSpec(as_of_date=dt.date.fromisoformat(partition))
    from refresh_assets.core import snapshot_cache
    from refresh_assets.core.artifacts import OutputStore

    with features.open_source(warehouse) as con:  # the same snapshot cache as the dataset step (cold here)
        cache = snapshot_cache.SnapshotCache(OutputStore(work / "outputs"), "plain")
        frames, _ = snapshot_cache.build_dataset(con, spec, cache)
    data = work / "dataset"
    for name in ("train", "holdout", "scoring"):
        atomic_write_parquet(data / f"{name}.parquet", getattr(frames, name))

    train = frames.train
    numeric, categorical = models.feature_columns(train)
    X, y, dates = train[numeric + categorical], train["label"].to_numpy(), train["as_of_date"].to_numpy()
    common = {"n_iter": training["tuning_budget"], "n_splits": training["cv_splits"],
              "seed": training["random_seed"], "max_rows": training["max_training_rows"],
              "importance_rows": training["importance_rows"]}
    tuned = {algorithm: models.tune(algorithm, X, y, dates, **common) for algorithm in BASE}
    tuned["ensemble"] = models.tune_ensemble({a: tuned[a].pipeline for a in BASE}, X, y, dates, **common)
    model_files = {}
    for algorithm, result in tuned.items():
        path = work / "candidates" / algorithm / "model.skops"
        save_model(result.pipeline, path)
        model_files[algorithm] = path
        atomic_write_json(path.parent / "summary.json", {"best_params": result.best_params,
                                                         "cv_score_roc_auc": result.cv_score})

    holdout = frames.holdout
    y_holdout = holdout["label"].to_numpy()
    predictions = {a: predict_scores(r.pipeline, holdout) for a, r in tuned.items()}
    metrics = {name: evaluate.classification_metrics(y_holdout, p, top_k=comparison["top_k_share"])
               for name, p in predictions.items()}
    decision = evaluate.decide(y_holdout, predictions, None, min_improvement=comparison["min_improvement"],
                               n_boot=comparison["bootstrap_samples"], alpha=1 - comparison["confidence"],
                               seed=comparison["random_seed"],
                               # as model_comparison chooses: by CV score unless the run config says holdout
                               selection_scores=({a: r.cv_score for a, r in tuned.items()}
                                                 if comparison.get("select_challenger_by", "cv_score") == "cv_score"
                                                 else None))
    table = evaluate.comparison_table(metrics, None)
    markdown = evaluate.comparison_markdown(table, decision)
    out = work / "comparison"
    atomic_write_json(out / "decision.json", {"decision": decision.to_dict(), "metrics": metrics})
    atomic_write_text(out / "report.md", markdown)
    table.to_csv(out / "metrics.csv")
    scored = holdout[["entity_id", "as_of_date", "label"]].copy()
    for name, p in predictions.items():
        scored[f"score_{name}"] = p
    atomic_write_parquet(out / "holdout_scores.parquet", scored)
    report.write_comparison_html(out / "report.html", y_holdout, predictions, markdown, title=f"Model comparison {partition}")

    registry = ModelRegistry(work / "registry")
    champion = registry.promote(model_files[decision.challenger], algorithm=decision.challenger,
                                partition_key=partition, metrics=metrics[decision.challenger],
                                dataset_hash="n/a", run_id="plain-script", reason=decision.reason)
    model = registry.load_model(champion.version)
    # the propagation's population: D's scoring rows built alone, as scoring_population does
    with features.open_source(warehouse) as con:
        population = features.build_scoring_population(con, spec.as_of_date, spec.label_horizon_days)
    atomic_write_parquet(work / "population" / "scoring.parquet", population.scoring)
    batch = pd.read_parquet(work / "population" / "scoring.parquet")
    scores = score_batch(model, batch, scoring["top_k_share"], champion.version)
    atomic_write_parquet(work / "scores" / "scores.parquet", scores)
    conformance = _realtime_scorer(work, registry, champion, model, batch, scores, partition,
                                   scoring["top_k_share"])
    return {"promoted": decision.challenger, "scored_rows": int(len(scores)),
            "train_rows": int(len(train)), "holdout_rows": int(len(holdout)), "realtime_conformance": conformance}


def _realtime_scorer(work: Path, registry, champion, model, batch, scores, partition: str,
                     scoring_top_k: float) -> str:
    """The propagation's last step (``realtime_scorer``) as a script does it: the champion converted to ONNX with
    its parity check, the generated conformance test run over HTTP in a fresh interpreter, published if it passed.
    Same settings as the step's defaults (``RealtimeConfig``, read from the same variables without importing
    Dagster); off when REFRESH_ASSETS_REALTIME is, as the step is."""
    import os

    from refresh_assets.serving import build

    if os.environ.get("REFRESH_ASSETS_REALTIME", "on").lower() in ("off", "0", "false", "no"):
        return "off"
    settings = build.ConformanceSettings(p99_ms=float(os.environ.get("REFRESH_ASSETS_REALTIME_P99_MS", "10")))
    folder = work / "realtime"
    folder.mkdir(parents=True, exist_ok=True)
    build.build_artifact(folder, model, batch, scores, {
        "version": champion.version, "algorithm": champion.algorithm, "model_sha256": champion.model_sha256,
        "model_path": champion.model_path, "partition": partition}, settings, top_k_share=scoring_top_k)
    result = build.run_conformance(folder, settings.timeout_seconds)
    if result.passed:
        build.publish(folder, registry.root, champion.version)
    return "passed" if result.passed else "failed"


if __name__ == "__main__":  # pragma: no cover - used by bench_refresh in a fresh process
    import sys

    args = json.loads(sys.argv[1])
    print(json.dumps(plain_refresh(args["warehouse"], args["workdir"], args["partition"], args["settings"])))
