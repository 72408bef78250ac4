"""Step 2: one candidate model per algorithm, each an sklearn Pipeline tuned with a time-aware search."""


import json

import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.audit import StepAudit, output_metadata, read_input
from refresh_assets.assets.dataset import DATASET
from refresh_assets.config import TrainingConfig
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore

BASE = ("logreg", "random_forest", "hist_gb")
MODEL_FILE = "model.skops"
FAILURE_FILE = "failure.json"
TRAINED_CHECK = "trained"


class CandidateTrainingError(RuntimeError):
    """Training a candidate raised; the step records it instead of failing (see ``_record_failure``)."""


def _trained_check(name: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(TRAINED_CHECK, asset=name, blocking=False,
                              description="The candidate trained; if not, its output records why and the comparison "
                                          "leaves it out (model_comparison.min_candidates).")]


def candidate_asset_name(algorithm: str) -> str:
    return f"candidate_{algorithm}"


def _training_frame(out_dir, manifest: dict, config: TrainingConfig):
    """(the training rows this candidate tunes and fits on, the number of training rows of the dataset).

    Only the seeded subsample of at most ``max_training_rows`` is decoded (``models.training_positions``, the
    rows ``tune`` would draw from the whole frame), so the step's memory follows the subsample, not the
    population. A label column with a NULL is read whole instead, for ``tune`` to refuse it as before.
    """
    from refresh_assets.core import models
    from refresh_assets.core.object_store import open_output_parquet, parquet_rows

    parquet = open_output_parquet(out_dir, "train.parquet", manifest)
    n_rows = parquet.metadata.num_rows
    if parquet.read(columns=["label"]).column(0).null_count:
        return parquet.read().to_pandas(), n_rows
    return parquet_rows(parquet, models.training_positions(n_rows, config.max_training_rows,
                                                            config.random_seed)), n_rows


def _store_candidate(audit: StepAudit, artifacts: ArtifactStore, tuned, dataset_manifest: dict) -> dg.MaterializeResult:
    name = candidate_asset_name(tuned.algorithm)
    summary = {
        "algorithm": tuned.algorithm,
        "best_params": tuned.best_params,
        "cv_score_roc_auc": tuned.cv_score,
        "cv_scores": tuned.cv_scores,
        "fit_seconds": tuned.fit_seconds,
        "n_train": tuned.n_train,
        "feature_importances": tuned.feature_importances,
    }
    with artifacts.store().stage(name, audit.partition_key, audit.run_id) as out, audit.timed("write"):
        model_sha = out.save_model(MODEL_FILE, tuned.pipeline)
        out.write_json("summary.json", summary)
        final = audit.commit(out, {
            "dataset_hash": dataset_manifest["dataset_hash"],
            "model_file": MODEL_FILE,
            "model_sha256": model_sha,
            **summary,
        })
    top = list(tuned.feature_importances.items())[:10]
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            "algorithm": tuned.algorithm,
            "best_params": dg.MetadataValue.json(json.loads(json.dumps(tuned.best_params, default=str))),
            "cv_roc_auc": float(tuned.cv_score),
            "fit_seconds": float(tuned.fit_seconds),
            "n_train": int(tuned.n_train),
            "feature_importances": dg.MetadataValue.md(
                "| feature | importance |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4f} |" for k, v in top)
                if top else "not computed (importance_rows = 0)"
            ),
            "dataset_hash": dataset_manifest["dataset_hash"],
            "model_sha256": model_sha,
        },
        data_version=dg.DataVersion(model_sha[:16]),
        check_results=[dg.AssetCheckResult(check_name=TRAINED_CHECK, passed=True,
                                           description=f"trained, CV ROC AUC {tuned.cv_score:.4f}")],
    )


def _record_failure(audit: StepAudit, artifacts: ArtifactStore, algorithm: str, error: BaseException,
                    dataset_manifest: dict) -> dg.MaterializeResult:
    """Commit a failure record as this partition's candidate output instead of failing the step.

    Why: Dagster skips every step downstream of a failed one, so one candidate running out of memory would
    stop the comparison of the others. Recorded like this, the run goes on; the comparison reads the record,
    leaves the candidate out with its reason, and refuses to decide below ``min_candidates``. The failed
    ``trained`` check (WARN) shows it in the UI.
    """
    name = candidate_asset_name(algorithm)
    failure = {"algorithm": algorithm, "error_type": type(error).__name__, "error": str(error)[:2000]}
    audit.log(f"{algorithm} failed to train and is left out: {failure['error_type']}: {failure['error']}", "error")
    with artifacts.store().stage(name, audit.partition_key, audit.run_id) as out:
        out.write_json(FAILURE_FILE, failure)
        final = audit.commit(out, {"status": "failed", "dataset_hash": dataset_manifest["dataset_hash"],
                                   "failure": failure})
    reason = f"{failure['error_type']}: {failure['error']}"
    return dg.MaterializeResult(
        metadata={**output_metadata(final), "algorithm": algorithm, "status": "failed", "error": reason},
        check_results=[dg.AssetCheckResult(check_name=TRAINED_CHECK, passed=False,
                                           severity=dg.AssetCheckSeverity.WARN, description=reason)],
    )


def failed_training(manifest: dict) -> str | None:
    """Why a candidate output is a failure record, or None for a trained model."""
    if manifest.get("status") != "failed":
        return None
    failure = manifest.get("failure") or {}
    return f"training failed: {failure.get('error_type')}: {failure.get('error')}"


def build_candidate_asset(algorithm: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=candidate_asset_name(algorithm),
        partitions_def=daily_partitions,
        deps=[DATASET],
        group_name="candidates",
        kinds={"scikitlearn"},
        check_specs=_trained_check(candidate_asset_name(algorithm)),
        description=f"A tuned {algorithm} candidate (Pipeline with preprocessing), trained on D's training rows.",
    )
    @retry_only_transient
    def _candidate(context: dg.AssetExecutionContext, config: TrainingConfig,
                   artifacts: ArtifactStore) -> dg.MaterializeResult:
        from refresh_assets.core import models

        audit = StepAudit(context, candidate_asset_name(algorithm), config)
        data_dir, data_manifest = read_input(audit, artifacts.store(), DATASET)
        train, n_rows = _training_frame(data_dir, data_manifest, config)
        numeric, categorical = models.feature_columns(train)
        audit.log(f"tuning {algorithm}: {n_rows} rows, {len(numeric)} numeric + {len(categorical)} "
                  f"categorical features, budget {config.tuning_budget}, {config.cv_splits} time-aware folds")
        try:
            with audit.timed("tune"):
                tuned = models.tune(
                    algorithm, train[numeric + categorical], train["label"].to_numpy(),
                    train["as_of_date"].to_numpy(), n_iter=config.tuning_budget, n_splits=config.cv_splits,
                    seed=config.random_seed, max_rows=config.max_training_rows, log=audit.log,
                    importance_rows=config.importance_rows,
                )
        except Exception as exc:  # MemoryError included: one candidate's failure must not stop the others
            return _record_failure(audit, artifacts, algorithm, exc, data_manifest)
        audit.log(f"{algorithm}: CV ROC AUC {tuned.cv_score:.4f}, best {tuned.best_params}, "
                  f"fit {tuned.fit_seconds:.1f}s")
        return _store_candidate(audit, artifacts, tuned, data_manifest)

    return _candidate


base_candidates = [build_candidate_asset(a) for a in BASE]


@dg.asset(
    name=candidate_asset_name("ensemble"),
    partitions_def=daily_partitions,
    deps=[DATASET, *[candidate_asset_name(a) for a in BASE]],
    group_name="candidates",
    kinds={"scikitlearn"},
    check_specs=_trained_check(candidate_asset_name("ensemble")),
    description="Soft-voting ensemble of the tuned base candidates, its voting weights tuned with the same split.",
)
@retry_only_transient
def candidate_ensemble(context: dg.AssetExecutionContext, config: TrainingConfig,
                       artifacts: ArtifactStore) -> dg.MaterializeResult:
    from refresh_assets.core import models
    from refresh_assets.core.artifacts import load_model

    audit = StepAudit(context, candidate_asset_name("ensemble"), config)
    store = artifacts.store()
    data_dir, data_manifest = read_input(audit, store, DATASET)
    bases = {}
    for algorithm in BASE:
        out_dir = store.current(candidate_asset_name(algorithm), audit.partition_key)
        if out_dir is None:
            audit.log(f"ensemble: no {algorithm} candidate for this partition, left out", "warning")
            continue
        manifest = store.read_manifest(out_dir)
        if manifest.get("dataset_hash") != data_manifest["dataset_hash"]:
            audit.log(f"ensemble: {algorithm} was trained on another dataset version, left out", "warning")
            continue
        if failed_training(manifest):
            audit.log(f"ensemble: {algorithm} left out, {failed_training(manifest)}", "warning")
            continue
        audit.record_input(candidate_asset_name(algorithm), out_dir, manifest)
        bases[algorithm] = load_model(out_dir / MODEL_FILE, manifest["model_sha256"])
    train, _ = _training_frame(data_dir, data_manifest, config)
    numeric, categorical = models.feature_columns(train)
    try:
        if len(bases) < 2:
            raise CandidateTrainingError(
                f"the ensemble needs at least 2 trained base candidates for this dataset, found {sorted(bases)}")
        with audit.timed("tune"):
            tuned = models.tune_ensemble(
                bases, train[numeric + categorical], train["label"].to_numpy(), train["as_of_date"].to_numpy(),
                n_iter=config.tuning_budget, n_splits=config.cv_splits, seed=config.random_seed,
                max_rows=config.max_training_rows, log=audit.log, importance_rows=config.importance_rows,
            )
    except Exception as exc:
        return _record_failure(audit, artifacts, "ensemble", exc, data_manifest)
    audit.log(f"ensemble of {sorted(bases)}: CV ROC AUC {tuned.cv_score:.4f}, weights {tuned.best_params}")
    return _store_candidate(audit, artifacts, tuned, data_manifest)


candidate_assets = [*base_candidates, candidate_ensemble]
