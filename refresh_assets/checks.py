"""Blocking asset checks on ``training_dataset``: a dataset that breaks a rule stops the refresh before training.

One op evaluates every rule of ``core/validation.py`` on the dataset the run just built and reports one
check per rule, each ``blocking``: when one fails (severity ERROR), Dagster runs none of the dataset's
downstream assets. Passing them is also what makes the dataset the partition's current one (until then it is
committed but unpublished), so a refused dataset is never read by candidates, scoring or drift either, and
the previous accepted dataset stays current. The thresholds are launchpad config of the
``training_dataset_checks`` op (``DatasetChecksConfig``).
"""

import dagster as dg

from refresh_assets.retries import retry_only_transient
from refresh_assets.assets.dataset import CHECKS_OP, DATASET, accept_or_refuse, run_limits
from refresh_assets.config import DatasetChecksConfig
from refresh_assets.core.validation import RULES
from refresh_assets.resources import ArtifactStore


def dataset_built_for(context: dg.AssetCheckExecutionContext, partition_key: str) -> str:
    """The output folder of the latest materialization of the partition's dataset: the one this run (or the
    run it re-executes) built, the one Dagster attaches these check results to."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(DATASET), asset_partitions=[partition_key]), limit=1).records
    if not records:
        raise RuntimeError(f"{CHECKS_OP}: no materialization of {DATASET} {partition_key} to check")
    metadata = records[0].asset_materialization.metadata
    if "output_dir" not in metadata:
        raise RuntimeError(f"{CHECKS_OP}: the latest {DATASET} {partition_key} materialization names no output_dir")
    return str(metadata["output_dir"].value)


@dg.multi_asset_check(
    name=CHECKS_OP,
    specs=[dg.AssetCheckSpec(rule, asset=DATASET, blocking=True, description=what)
           for rule, (_, what) in RULES.items()],
    description="Data rules the refresh date's dataset must pass before any model is trained on it "
                "(and before it becomes the partition's current dataset).",
)
@retry_only_transient
def training_dataset_checks(context: dg.AssetCheckExecutionContext, config: DatasetChecksConfig,
                            artifacts: ArtifactStore):
    partition_key = context.run.tags.get("dagster/partition")
    if partition_key is None:
        raise RuntimeError(f"{CHECKS_OP} runs inside a partitioned refresh: the run has no partition key")
    store = artifacts.store()
    output_dir = store.locate(dataset_built_for(context, partition_key))
    results, refused = accept_or_refuse(store, partition_key, output_dir,
                                        run_limits(context.run.run_config, config), context.log)
    for result in results:
        yield dg.AssetCheckResult(
            asset_key=DATASET,
            check_name=result.rule,
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.message,
            metadata={"message": result.message, "output_dir": dg.MetadataValue.path(str(output_dir)),
                      **{k: v for k, v in result.metadata.items() if isinstance(v, (int, float, str))}},
        )
    if refused is not None:
        # Dagster's own failure would name only the checks; this names the figures too (run failure, alert, CLI).
        raise refused


dataset_checks = [training_dataset_checks]
