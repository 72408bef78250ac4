"""Blocking asset checks on ``training_dataset``: a dataset that breaks a rule stops the refresh before training.

One op evaluates every rule of ``core/validation.py`` on the stored frames and reports one check per rule,
each ``blocking``: when one fails (severity ERROR), Dagster runs none of the dataset's downstream assets, so
candidates, comparison, champion, registry and scores keep what they held. The thresholds are launchpad
config of the ``training_dataset_checks`` op (``DatasetChecksConfig``).
"""

import dagster as dg

from refresh_assets.assets.dataset import DATASET, dataset_under_test
from refresh_assets.config import DatasetChecksConfig
from refresh_assets.core.validation import RULES
from refresh_assets.resources import ArtifactStore

CHECKS_OP = "training_dataset_checks"


@dg.multi_asset_check(
    name=CHECKS_OP,
    specs=[dg.AssetCheckSpec(rule, asset=DATASET, blocking=True, description=what)
           for rule, (_, what) in RULES.items()],
    description="Data rules the refresh date's dataset must pass before any model is trained on it.",
)
def training_dataset_checks(context: dg.AssetCheckExecutionContext, config: DatasetChecksConfig,
                            artifacts: ArtifactStore):
    from refresh_assets.core.validation import validate

    partition_key = context.run.tags.get("dagster/partition")
    if partition_key is None:
        raise RuntimeError(f"{CHECKS_OP} runs inside a partitioned refresh: the run has no partition key")
    output_dir, data = dataset_under_test(artifacts.store(), partition_key)
    refused = []
    for result in validate(data, config.limits()):
        if not result.passed:
            refused.append(f"{result.rule}: {result.message}")
            context.log.error(f"dataset check {result.rule} failed for {partition_key}: {result.message}")
        yield dg.AssetCheckResult(
            asset_key=DATASET,
            check_name=result.rule,
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.message,
            metadata={"message": result.message, "output_dir": dg.MetadataValue.path(str(output_dir)),
                      **{k: v for k, v in result.metadata.items() if isinstance(v, (int, float, str))}},
        )
    if refused:
        # Dagster's own failure would name only the checks; this names the figures too (run failure, alert,
        # CLI). Not retried: the same data breaks the same rule every time.
        raise dg.Failure(
            description=f"{DATASET} for {partition_key} refused by {len(refused)} blocking check(s): "
                        + "; ".join(refused),
            allow_retries=False,
        )


dataset_checks = [training_dataset_checks]
