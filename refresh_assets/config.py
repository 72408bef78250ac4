"""Run inputs a user sets in the Dagster launchpad, each with a default and a description.

Validated early: an unknown algorithm is refused by Dagster's config schema before the run is created (the
``Algorithm`` enum); ranges and the start date are checked by ``preflight`` in the first step of a refresh,
before any data is read, and by the CLI before it launches anything. Every message names the field.
"""


import datetime as dt
import os
from enum import Enum
from typing import Any, Literal

import dagster as dg
from pydantic import Field, ValidationError, field_validator

from refresh_assets.core.features import DatasetSpec, snapshot_plan


class Algorithm(str, Enum):
    """The candidate algorithms (see ``core/models.py``)."""

    logreg = "logreg"
    random_forest = "random_forest"
    hist_gb = "hist_gb"
    ensemble = "ensemble"


ALL_ALGORITHMS = [a.value for a in Algorithm]


def _iso_date(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field} must be a date YYYY-MM-DD, got {value!r}") from exc
    return value


class DatasetConfig(dg.Config):
    """How the training, holdout and scoring rows are cut for refresh date D."""

    data_start_date: str | None = Field(
        default=None, description="First snapshot date to train on (YYYY-MM-DD). Empty: D minus lookback_days."
    )
    lookback_days: int = Field(default=91, ge=14, le=3650, description="Days of history when data_start_date is empty.")
    label_horizon_days: int = Field(
        default=14, ge=1, le=180, description="Churn label: no session in the N days after a snapshot."
    )
    holdout_days: int = Field(
        default=14, ge=1, le=365, description="Span of the most recent labelled snapshots kept as out-of-time holdout."
    )
    snapshot_every_days: int = Field(default=7, ge=1, le=91, description="Days between two snapshot dates.")
    cold_build: bool = Field(
        default=False,
        description="Recompute every snapshot from the raw tables instead of reusing the snapshot cache's rows "
                    "(the cache is refreshed). The dataset is the same either way; use it if the raw data changed "
                    "in a way the fingerprint cannot see (a query reading files outside the warehouse's tables).")

    @field_validator("data_start_date")
    @classmethod
    def _check_start(cls, value: str | None) -> str | None:
        return _iso_date(value, "data_start_date")

    def spec(self, as_of_date: dt.date) -> DatasetSpec:
        start = dt.date.fromisoformat(self.data_start_date) if self.data_start_date else None
        if start is not None and start >= as_of_date:
            raise ValueError(f"data_start_date {start} must be before the partition date {as_of_date}")
        return DatasetSpec(
            as_of_date=as_of_date,
            data_start_date=start,
            lookback_days=self.lookback_days,
            label_horizon_days=self.label_horizon_days,
            holdout_days=self.holdout_days,
            snapshot_every_days=self.snapshot_every_days,
        )


class DatasetChecksConfig(dg.Config):
    """Thresholds of the blocking checks on the dataset (``core/validation.py``): a dataset outside them
    stops the refresh before any training."""

    min_train_rows: int = Field(default=200, ge=1, description="Fewest training rows.")
    min_holdout_rows: int = Field(default=100, ge=1, description="Fewest holdout rows.")
    min_scoring_rows: int = Field(default=1, ge=0, description="Fewest rows in the scoring population.")
    max_total_rows: int = Field(default=50_000_000, ge=1, description="Most rows in all three frames together.")
    min_label_rate: float = Field(default=0.01, ge=0.0, le=1.0, description="Lowest churn rate in train and holdout.")
    max_label_rate: float = Field(default=0.95, ge=0.0, le=1.0, description="Highest churn rate in train and holdout.")
    max_null_rate: float = Field(default=0.95, ge=0.0, le=1.0,
                                 description="Highest share of training rows in which one feature may be NULL.")
    min_holdout_positives: int = Field(default=20, ge=1, description="Fewest churners in the holdout (bootstrap).")
    min_holdout_negatives: int = Field(default=20, ge=1, description="Fewest stayers in the holdout (bootstrap).")
    required_features: dict[str, str] = Field(
        default_factory=dict, description='Feature -> "number" or "text" the query must return.')

    @field_validator("required_features")
    @classmethod
    def _check_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in value.items() if v not in ("number", "text")}
        if bad:
            raise ValueError(f'required_features types must be "number" or "text", got {bad}')
        return value

    def limits(self, slice_columns: list[str] | None = None):
        """The rules' thresholds; ``slice_columns`` is the comparison's setting, judged with the dataset."""
        from refresh_assets.core.validation import DatasetLimits

        if self.min_label_rate > self.max_label_rate:
            raise ValueError(f"min_label_rate {self.min_label_rate} is above max_label_rate {self.max_label_rate}")
        return DatasetLimits(**self.model_dump(),
                             slice_columns=None if slice_columns is None else tuple(slice_columns))


class TrainingConfig(dg.Config):
    """How one candidate is tuned."""

    tuning_budget: int = Field(default=4, ge=1, le=200, description="Randomised-search iterations (parameter sets tried).")
    cv_splits: int = Field(default=3, ge=2, le=10, description="Time-aware CV folds over snapshot dates.")
    max_training_rows: int = Field(
        default=30_000, ge=100, description="Seeded subsample of training rows used for tuning and fitting."
    )
    random_seed: int = Field(default=42, description="Seed for the search and the models.")
    importance_rows: int = Field(
        default=3000, ge=0,
        description="Out-of-time rows for the permutation importances shown with the candidate (explanation only, "
                    "no decision reads them); 0 skips them. They cost about as much as a small search.",
    )


class ComparisonConfig(dg.Config):
    """How candidates and the champion are compared, and when a challenger is promoted."""

    algorithms: list[Algorithm] = Field(
        default_factory=lambda: list(Algorithm), description="Candidates that may challenge the champion."
    )
    min_improvement: float = Field(
        default=0.0, ge=-0.1, le=0.5,
        description="Promote only if the lower bound of the ROC AUC improvement interval is above this.",
    )
    select_challenger_by: Literal["cv_score", "holdout"] = Field(
        default="cv_score",
        description="How the challenger the gates judge is chosen: 'cv_score' (each candidate's out-of-time "
                    "cross-validated ROC AUC on the training data: the holdout only gates it) or 'holdout' (the "
                    "best on the holdout that then gates it: biased upward, see docs/DECISIONS.md).",
    )
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000, description="Paired bootstrap replicates.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Confidence level of the interval.")
    top_k_share: float = Field(default=0.1, gt=0.0, le=0.5, description="Share flagged for precision/recall at top k.")
    random_seed: int = Field(default=42, description="Seed of the bootstrap.")
    calibration_margin: float = Field(
        default=0.002, ge=0.0, le=0.1,
        description="Guardrail: promote only if the upper bound of the Brier(challenger) - Brier(champion) "
                    "interval is at most this (non-inferiority margin on calibration).",
    )
    slice_margin: float = Field(
        default=0.02, ge=0.0, le=0.5,
        description="Guardrail: in every slice large enough to judge, the lower bound of the ROC AUC gain "
                    "interval must be at least minus this.",
    )
    slice_columns: list[str] | None = Field(
        default=None,
        description="Holdout columns whose values are slices for the slice guardrail, each required in the "
                    "dataset (checked before training); [] for none; empty: every text feature with 2-20 values.",
    )
    min_slice_rows: int = Field(default=500, ge=2, description="Slices with fewer holdout rows are reported, not gated.")
    min_slice_positives: int = Field(
        default=50, ge=2, description="Slices with fewer rows of either class are reported, not gated."
    )

    def guardrails(self):
        """The plain-Python guardrail settings ``evaluate.guardrail_gates`` takes."""
        from refresh_assets.core.evaluate import GuardrailSettings

        return GuardrailSettings(
            calibration_margin=self.calibration_margin, slice_margin=self.slice_margin,
            slice_columns=None if self.slice_columns is None else tuple(self.slice_columns), min_slice_rows=self.min_slice_rows,
            min_slice_positives=self.min_slice_positives,
        )

    min_candidates: int = Field(
        default=2, ge=1, le=len(ALL_ALGORITHMS),
        description="Decide only when at least this many candidates trained (capped at the number of algorithms "
                    "allowed); a failed candidate is left out, with its reason in the report.",
    )

    def required_candidates(self) -> int:
        return min(self.min_candidates, len(self.algorithms))

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: list) -> list:
        if not value:
            raise ValueError("algorithms must name at least one candidate")
        return value


class PopulationConfig(dg.Config):
    """How D's scoring population is built and which of its rows may be scored."""

    label_horizon_days: int = Field(
        default=14, ge=1, le=180,
        description="Bound to the query's $label_horizon_days as a refresh binds it (D's label is NULL anyway); "
                    "keep it equal to training_dataset's so both paths run the query alike.",
    )
    min_rows: int = Field(default=1, ge=1, description="Fewest scoring rows.")
    max_null_rate: float = Field(default=0.95, gt=0.0, le=1.0,
                                 description="Highest NULL share of one feature in the scoring rows.")

    def limits(self):
        from refresh_assets.core.validation import PopulationLimits

        return PopulationLimits(min_rows=self.min_rows, max_null_rate=self.max_null_rate)


class ChampionConfig(dg.Config):
    """``champion_model``: decided by the comparison in a refresh; ``rollback_job`` names a version instead."""

    rollback_to_version: int = Field(
        default=0, ge=0,
        description="rollback_job only: the registry version to make champion again (`refresh-assets champion` "
                    "lists them). 0: the refresh's comparison decides.",
    )
    reason: str = Field(default="", description="rollback_job only: why, recorded in the registry and the audit.")


class ScoringConfig(dg.Config):
    """Batch scoring of the scoring population with the champion."""

    top_k_share: float = Field(default=0.1, gt=0.0, le=0.5, description="Share of players flagged as most at risk.")


class RealtimeConfig(dg.Config):
    """The real-time scorer built from the champion after D's batch scoring, and the bar it must meet."""

    enabled: bool = Field(default_factory=lambda: os.environ.get("REFRESH_ASSETS_REALTIME", "on").lower()
                          not in ("off", "0", "false", "no"),
                          description="Build, prove and publish the real-time scorer (REFRESH_ASSETS_REALTIME=off: "
                                      "a deployment that serves batch scores only skips it, and says so).")

    sample_rows: int = Field(default=200, ge=1, le=100_000,
                             description="Rows of D's population the conformance test replays over HTTP.")
    latency_requests: int = Field(default=200, ge=10, description="Single-row requests timed for the p99.")
    p99_ms: float = Field(default_factory=lambda: float(os.environ.get("REFRESH_ASSETS_REALTIME_P99_MS", "10")),
                          gt=0.0,
                          description="The served single-row p99 latency (ms, loopback) the scorer must meet "
                                      "to be published (default REFRESH_ASSETS_REALTIME_P99_MS, else 10).")
    top_k_share: float = Field(default=0.1, gt=0.0, le=0.5,
                               description="Share flagged as at risk, as in production_scores (risk threshold).")


class DriftConfig(dg.Config):
    """How the drift check compares D's scoring population with the champion's training data."""

    drift_share: float = Field(
        default=0.05, gt=0.0, le=1.0,
        description="Dataset drift when at least this share of the judged feature columns drifted "
                    "(0.05: any one of the packaged 18; see docs/DECISIONS.md).",
    )
    min_column_values: int = Field(
        default=1000, ge=1,
        description="Columns with fewer non-null values on either side are shown but not counted in the share.",
    )
    num_method: str | None = Field(default=None, description="Evidently stat test for numeric columns; empty: Evidently's default (normed Wasserstein above 1000 rows).")
    cat_method: str | None = Field(default=None, description="Evidently stat test for categorical columns; empty: Evidently's default (Jensen-Shannon above 1000 rows).")
    per_column_method: dict[str, str] = Field(default_factory=dict, description="Column -> Evidently stat test, overriding the above.")
    per_column_threshold: dict[str, float] = Field(default_factory=dict, description="Column -> drift threshold for its test.")
    sample_size: int = Field(default=50_000, ge=1001, description="Seeded rows per side Evidently sees (speed on big data).")
    random_seed: int = Field(default=0, description="Seed of the sample.")
    null_share_delta: float = Field(
        default=0.1, ge=0.0, le=1.0,
        description="Missingness check (Evidently's distances ignore NULLs): a column drifts when its NULL share "
                    "moved by at least this much, either way (and a two-proportion z-test agrees); 0: off.",
    )
    top_value_delta: float = Field(
        default=0.1, ge=0.0, le=1.0,
        description="Collapse check (categorical columns): a column drifts when the share of the current data's "
                    "most common value rose by at least this much over the reference (and the z-test agrees); 0: off.",
    )
    share_alpha: float = Field(default=0.001, gt=0.0, le=1.0,
                               description="Significance level of the z-test both share checks also require.")

    def settings(self):
        from refresh_assets.core.drift import DriftSettings

        return DriftSettings(
            drift_share=self.drift_share, num_method=self.num_method or None, cat_method=self.cat_method or None,
            per_column_method=dict(self.per_column_method) or None,
            per_column_threshold=dict(self.per_column_threshold) or None,
            sample_size=self.sample_size, seed=self.random_seed, min_column_values=self.min_column_values,
            null_share_delta=self.null_share_delta, top_value_delta=self.top_value_delta,
            share_alpha=self.share_alpha,
        )


#: Which Config class each asset (op) of the refresh takes: used by preflight and the CLI.
OP_CONFIGS: dict[str, type[dg.Config]] = {
    "training_dataset": DatasetConfig,
    "training_dataset_checks": DatasetChecksConfig,
    **{f"candidate_{a}": TrainingConfig for a in ALL_ALGORITHMS},
    "model_comparison": ComparisonConfig,
    # rollback_job's inputs (`trigger --job rollback_job --set rollback_to_version=1 --set reason=...`)
    "champion_model": ChampionConfig,
}


def _date_problem(key: str) -> str | None:
    try:
        dt.date.fromisoformat(key)
    except ValueError:
        return f"partition {key!r} is not a date YYYY-MM-DD"
    return None


class ConfigError(ValueError):
    """A run input is invalid; the message names the field."""


def describe_validation_error(op_name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ())) or "config"
        parts.append(f"{op_name}.{where}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)


def preflight(run_config: dict[str, Any] | None, partition_key: str | None, *,
              local_partitions: bool = True) -> list[str]:
    """Validate every op's config of a refresh run, and the partition key, before any work; raise ConfigError.

    ``local_partitions``: the key must be a partition of this process's code location (the CLI's own runs);
    False when a server with its own partitions (REFRESH_ASSETS_PARTITION_START) launches the run (trigger.py
    asks that server instead), so only the date itself is checked here."""
    problems: list[str] = []
    ops = (run_config or {}).get("ops", {}) or {}
    as_of = None
    if partition_key is not None:
        from refresh_assets.partitions import partition_key_problem

        problem = partition_key_problem(partition_key) if local_partitions else _date_problem(partition_key)
        if problem:
            problems.append(problem)
        else:
            as_of = dt.date.fromisoformat(partition_key)
    unknown = sorted(set(ops) - set(OP_CONFIGS) - {"champion_shadow_test", "scoring_population", "production_scores",
                                                   "drift_report", "realtime_scorer"})
    if unknown:
        problems.append(f"unknown op(s) in run config: {unknown}; known: {sorted(OP_CONFIGS)}")
    for op_name, cls in OP_CONFIGS.items():
        raw = (ops.get(op_name) or {}).get("config") or {}
        try:
            cfg = cls(**raw)
        except ValidationError as exc:
            problems.append(describe_validation_error(op_name, exc))
            continue
        except (TypeError, ValueError) as exc:
            problems.append(f"{op_name}: {exc}")
            continue
        if isinstance(cfg, DatasetChecksConfig):
            try:
                cfg.limits()
            except ValueError as exc:
                problems.append(f"{op_name}: {exc}")
        if isinstance(cfg, DatasetConfig) and as_of is not None:
            try:
                snapshot_plan(cfg.spec(as_of))
            except ValueError as exc:
                problems.append(f"{op_name}: {exc}")
    if problems:
        raise ConfigError("invalid run input: " + "; ".join(problems))
    return []
