"""Step 1: run the query scripts on DuckDB and store D's training, holdout and scoring frames.

The new dataset is committed but becomes the partition's current one (what candidates, scoring and drift
read) only once the blocking rules of ``core/validation.py`` pass: the ``training_dataset_checks`` step
publishes it, or this step itself when a run leaves that step out. A refused dataset stays on disk for
inspection and is never read; the previous accepted dataset of the partition, if any, stays current.
"""


import datetime as dt
import os

import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.audit import MissingInputError, StepAudit, output_metadata
from refresh_assets.config import DatasetConfig, preflight
from refresh_assets.core import features
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Warehouse

DATASET = "training_dataset"
#: Retries of the query on transient DuckDB errors (a locked file), separate from the step RetryPolicy.
TRANSIENT_RETRIES = int(os.environ.get("REFRESH_ASSETS_QUERY_RETRY_MAX", "5"))
TRANSIENT_WAIT_SECONDS = float(os.environ.get("REFRESH_ASSETS_QUERY_RETRY_DELAY_SECONDS", "10"))
FRAMES = ("train", "holdout", "scoring")
CHECKS_OP = "training_dataset_checks"


@dg.asset(
    name=DATASET,
    partitions_def=daily_partitions,
    group_name="refresh",
    kinds={"duckdb", "parquet"},
    description="Training, out-of-time holdout and scoring rows for refresh date D, from the SQL query scripts.",
)
@retry_only_transient
def training_dataset(context: dg.AssetExecutionContext, config: DatasetConfig, warehouse: Warehouse,
                     artifacts: ArtifactStore) -> dg.MaterializeResult:
    # The first step checks every input of the run before any work, so a bad value costs nothing.
    preflight(context.run.run_config, context.partition_key)
    from refresh_assets.core.artifacts import frame_hash
    from refresh_assets.core.validation import feature_schema

    audit = StepAudit(context, DATASET, config)
    spec = config.spec(dt.date.fromisoformat(context.partition_key))
    from refresh_assets.core import snapshot_cache

    try:
        with audit.timed("query"), warehouse.connect() as con:
            # only the snapshots the cache does not hold for today's raw data are computed (core/snapshot_cache.py)
            frames, cache_report = snapshot_cache.build_dataset(
                con, spec, snapshot_cache.SnapshotCache(artifacts.store(), audit.run_id, {
                    "job": context.run.job_name, "source": warehouse.location,
                    "query_path": warehouse.query_path or "packaged:churn_features.sql"}), warehouse.query_path,
                date_columns=warehouse.date_columns, cold=config.cold_build, log=audit.log)
    except Exception as exc:
        if not features.is_transient(exc):
            raise
        # A locked or briefly unreachable warehouse: ask Dagster to run this step again later. A SQL error
        # is not retried: it would fail the same way every time.
        audit.log(f"transient warehouse error, step retry requested: {exc}", "warning")
        raise dg.RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=TRANSIENT_WAIT_SECONDS) from exc
    from concurrent.futures import ThreadPoolExecutor

    with artifacts.store().stage(DATASET, context.partition_key, audit.run_id) as out, audit.timed("write"):
        # hashes and Parquet writes of the three frames on two threads (pyarrow's encoder and most of pandas'
        # hashing release the GIL): about a third off the step's fixed cost at 200k players, same bytes
        with ThreadPoolExecutor(max_workers=2) as pool:
            writes = [pool.submit(out.write_parquet, f"{name}.parquet", getattr(frames, name)) for name in FRAMES]
            hashed = {name: pool.submit(frame_hash, getattr(frames, name)) for name in FRAMES}
            for write in writes:
                write.result()
            hashes = {name: future.result() for name, future in hashed.items()}
        dataset_hash = frame_hash_of(hashes)
        final = audit.commit(out, {
            "dataset_hash": dataset_hash,
            "frame_hashes": hashes,
            "query_sha256": frames.query_sha256,
            "query_path": warehouse.query_path or "packaged:churn_features.sql",
            "source": warehouse.location,
            "plan": {
                "train": [str(d) for d in frames.plan.train_dates],
                "holdout": [str(d) for d in frames.plan.holdout_dates],
                "scoring": str(frames.plan.scoring_date),
            },
            "stats": frames.stats,
            "snapshot_cache": cache_report.to_dict(),
            # what a model trained on this dataset expects: the daily scoring population is checked against it
            "schema": feature_schema(frames.train),
        }, publish=False)
    checked_later = CHECKS_OP in steps_of_run(context)
    if checked_later:
        audit.context.log.info(f"{DATASET} {context.partition_key} becomes current once {CHECKS_OP} pass")
    else:
        # A run without the checks step (a custom selection): apply the same rules here, so that unchecked
        # data never becomes what the rest of the pipeline reads.
        _, refused = accept_or_refuse(artifacts.store(), context.partition_key, final,
                                      run_limits(context.run.run_config), context.log)
        if refused is not None:
            raise refused
    stats = frames.stats
    return dg.MaterializeResult(
        metadata={
            **output_metadata(final),
            "train_rows": stats["train"]["rows"],
            "holdout_rows": stats["holdout"]["rows"],
            "scoring_rows": stats["scoring"]["rows"],
            "train_label_rate": stats["train"]["label_rate"],
            "holdout_label_rate": stats["holdout"]["label_rate"],
            "train_dates": f"{stats['train']['first_snapshot']} .. {stats['train']['last_snapshot']}",
            "holdout_dates": f"{stats['holdout']['first_snapshot']} .. {stats['holdout']['last_snapshot']}",
            "dataset_hash": dataset_hash,
            "query_sha256": frames.query_sha256,
            "source": dg.MetadataValue.path(warehouse.location),
            "current": "after training_dataset_checks pass" if checked_later else "yes (rules passed)",
            "snapshots_reused": len(cache_report.reused),
            "snapshots_computed": len(cache_report.computed),
            "snapshot_cache": cache_report.summary(),
        },
        data_version=dg.DataVersion(dataset_hash[:16]),
    )


def frame_hash_of(hashes: dict[str, str]) -> str:
    """One hash for the whole dataset, from the hashes of its frames in a fixed order."""
    import hashlib

    return hashlib.sha256("|".join(f"{k}={hashes[k]}" for k in sorted(hashes)).encode()).hexdigest()


def steps_of_run(context) -> set[str]:
    """Names of the steps this run executes (all of the job's when it does not select some)."""
    keys = context.run.step_keys_to_execute
    return set(keys) if keys is not None else {node.name for node in context.job_def.graph.nodes}


def checks_config(run_config: dict):
    """The run's launchpad thresholds for the dataset checks (defaults where it sets none)."""
    from refresh_assets.config import DatasetChecksConfig

    op = ((run_config or {}).get("ops") or {}).get(CHECKS_OP) or {}
    return DatasetChecksConfig(**(op.get("config") or {}))


def run_limits(run_config: dict, checks: "DatasetChecksConfig | None" = None):
    """The dataset rules' thresholds for a run: the checks op's config (``checks``, else the run's), plus the
    slice columns of the run's model_comparison config, so a named slice column the data lacks is refused
    with the dataset, before any training."""
    from refresh_assets.config import ComparisonConfig

    checks = checks or checks_config(run_config)
    op = ((run_config or {}).get("ops") or {}).get("model_comparison") or {}
    return checks.limits(slice_columns=ComparisonConfig(**(op.get("config") or {})).slice_columns)


class DatasetRefused(dg.Failure):
    """The dataset broke a blocking rule: it stays unpublished and nothing downstream may use it."""


def refusal(store, partition_key: str, output_dir, refused: list[str]) -> DatasetRefused:
    """The failure raised for a refused dataset: which rules, with figures, and what stays current."""
    previous = store.current(DATASET, partition_key)
    kept = (f"the previous accepted dataset ({previous.name}) stays current" if previous is not None
            else f"no dataset of {partition_key} is current")
    # Not retried: the same data breaks the same rule every time.
    return DatasetRefused(
        description=f"{DATASET} for {partition_key} refused by {len(refused)} blocking check(s): "
                    + "; ".join(refused) + f". The refused output {output_dir} is kept for inspection; {kept}.",
        allow_retries=False,
    )


def accept_or_refuse(store, partition_key: str, output_dir, limits, log):
    """Run every rule on a committed dataset and publish it if all pass. Returns (the rule results, which
    the checks step reports as asset checks; the ``DatasetRefused`` to raise, or None when published)."""
    from refresh_assets.core.validation import validate

    _, data = dataset_under_test(store, partition_key, output_dir)
    results = validate(data, limits)
    refused = [f"{r.rule}: {r.message}" for r in results if not r.passed]
    for line in refused:
        log.error(f"dataset check failed for {partition_key}: {line}")
    if refused:
        return results, refusal(store, partition_key, output_dir, refused)
    store.publish(DATASET, partition_key, output_dir)
    log.info(f"{DATASET} {partition_key} passed {len(results)} rules: {output_dir} is now current")
    return results, None


def dataset_under_test(store, partition_key: str, output_dir=None):
    """A committed dataset of a partition as the validation rules read it: (its folder, the frames).
    Without ``output_dir``, the current one."""
    from refresh_assets.core.object_store import read_output_parquet
    from refresh_assets.core.validation import DatasetUnderTest

    output_dir = store.current(DATASET, partition_key) if output_dir is None else store.locate(output_dir)
    if output_dir is None:
        raise RuntimeError(f"no committed {DATASET} for partition {partition_key} to check")
    manifest = store.read_manifest(output_dir)
    frames = {name: read_output_parquet(output_dir, f"{name}.parquet", manifest) for name in FRAMES}
    return output_dir, DatasetUnderTest(
        **frames, as_of_date=dt.date.fromisoformat(partition_key),
        rows_after_as_of_date=int(manifest.get("stats", {}).get("rows_after_as_of_date", 0)),
    )


def champion_training_dir(store, champion):
    """The exact dataset output the champion was trained on (same partition, same dataset hash)."""
    for output_dir in reversed(store.list_outputs(DATASET, champion.partition_key)):
        if store.read_manifest(output_dir).get("dataset_hash") == champion.dataset_hash:
            return output_dir
    raise MissingInputError(
        f"the training data of champion v{champion.version} (training_dataset {champion.partition_key}, "
        f"hash {champion.dataset_hash[:12]}) is no longer in the output store"
    )


def champion_feature_schema(store, champion) -> dict[str, str]:
    """feature -> "number" / "text" the champion was trained on, from its dataset's manifest (or, for a dataset
    written before manifests recorded it, from its training frame)."""
    from refresh_assets.core.object_store import read_output_parquet
    from refresh_assets.core.validation import feature_schema

    output_dir = champion_training_dir(store, champion)
    manifest = store.read_manifest(output_dir)
    if manifest.get("schema"):
        return dict(manifest["schema"])
    return feature_schema(read_output_parquet(output_dir, "train.parquet", manifest))
