"""Feature drift of the scoring population (current, date D) against the champion's training data (reference).

The per-column scores and verdicts are Evidently's (``ValueDrift`` metrics run through ``Report`` -- the
metrics ``DataDriftPreset`` generates per column), and the dataset verdict uses the same rule as the
preset: dataset drift when ``share of drifted columns >= drift_share``
(evidently/legacy/calculations/data_drift.py, ``get_dataset_drift``).

Why a sample: on this 2-core machine DataDriftPreset on 1M rows x 11 columns took 77 s, and the ValueDrift
metrics alone take ~23 s on 1M x 20; the scoring job needs an answer in seconds. For more than 1000
non-null reference values Evidently's default methods are distances -- normed Wasserstein for numeric
columns, Jensen-Shannon for categorical and low-cardinality (<= 5 values) numeric ones, both with
threshold 0.1. A distance computed on a uniform random sample of n rows per side converges to the
full-data distance with an error that shrinks like 1/sqrt(n); it does not become more "significant" as a
p-value would, so a fixed n gives the full-data verdicts except for columns whose score sits within a
few estimator spreads of the threshold. See ``DEFAULT_SAMPLE_SIZE`` for the measured spread, and
refresh_assets_tests/benchmarks/bench_drift.py for the end-to-end comparison.

Like Evidently, the distances ignore NULLs: a column whose NULL share grows but whose non-null values
keep their distribution is not flagged.

Evidently is imported inside the functions: importing it takes seconds and the Dagster code location
must load fast (a test checks that importing this module leaves ``evidently`` out of ``sys.modules``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
#: Dataset-frame columns that are identifiers or the target, never features to check for drift.
NON_FEATURE_COLUMNS = ("entity_id", "as_of_date", "label")

#: Rows drawn (uniformly, without replacement, seeded) from each side by ``check_drift``.
#:
#: Why 50,000: the sampled distance differs from the full-data distance by sampling noise of order
#: 1/sqrt(n) plus a small upward bias (a distance between two finite samples is never 0). Measured on
#: churn-like synthetic features (1M rows per side, 20 sample seeds, Wasserstein/std exactly as Evidently
#: computes it), at n = 50,000 the (sampled - full) score had sd 0.0016-0.0065 and bias up to +0.006 for
#: fully populated numeric columns, sd 0.0013-0.0017 for categorical ones (Jensen-Shannon), and the
#: largest deviation in 20 seeds was 0.018 -- against a threshold of 0.1. So only columns whose full
#: score lies within about +-0.02 of the threshold can change verdict. A column that is 80% NULL keeps
#: only ~10k values per side: sd 0.0125, largest deviation 0.039. Doubling n to 100,000 cut the spread
#: only ~1.4x (sd 0.0015-0.0046) but doubles the row-dependent part of Evidently's time; at 50,000 a run
#: on 20 features takes ~3 s (plus ~3 s to import Evidently once per process), within the 10 s budget.
DEFAULT_SAMPLE_SIZE = 50_000

# Evidently (legacy/calculations/stattests/registry.py, _get_default_stattest) uses p-value tests when the
# reference column has at most this many non-null values, distances above it; numeric columns with at
# most _LOW_CARDINALITY distinct values get Jensen-Shannon instead of Wasserstein.
_EVIDENTLY_SMALL_REFERENCE = 1000
_LOW_CARDINALITY = 5
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"


# ---------------------------------------------------------------------------------------------------------
# results and settings
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict as Evidently computed it; ``method`` is the registered name (e.g. 'wasserstein')."""

    column: str
    kind: str  # NUMERICAL | CATEGORICAL
    method: str
    score: float
    threshold: float
    drifted: bool
    judged: bool = True  # False: too few values on a side (min_column_values); shown, not counted in the share


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class DriftResult:
    """Dataset and per-column drift verdicts plus what was run (rows, sample, seed, seconds) to reproduce it."""

    dataset_drift: bool
    drift_share: float  # share of checked columns that drifted
    share_threshold: float  # dataset drift when drift_share >= share_threshold
    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int
    sampled_rows: tuple[int, int]  # (reference, current) rows Evidently actually saw
    sample_seed: int
    seconds: float

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        """Columns that drifted AND were judged (counted in the share)."""
        return tuple(column.column for column in self.columns if column.drifted and column.judged)

    @property
    def unjudged_columns(self) -> tuple[str, ...]:
        return tuple(column.column for column in self.columns if not column.judged)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (lists, not tuples; NaN/inf scores become None)."""
        return {
            "dataset_drift": bool(self.dataset_drift),
            "drift_share": float(self.drift_share),
            "share_threshold": float(self.share_threshold),
            "drifted_columns": list(self.drifted_columns),
            "unjudged_columns": list(self.unjudged_columns),
            "columns": [
                {
                    "column": column.column,
                    "kind": column.kind,
                    "method": column.method,
                    "score": _json_float(column.score),
                    "threshold": _json_float(column.threshold),
                    "drifted": bool(column.drifted),
                    "judged": bool(column.judged),
                }
                for column in self.columns
            ],
            "reference_rows": int(self.reference_rows),
            "current_rows": int(self.current_rows),
            "sampled_rows": [int(rows) for rows in self.sampled_rows],
            "sample_seed": int(self.sample_seed),
            "seconds": float(self.seconds),
        }

    def markdown_table(self) -> str:
        """A one-line verdict followed by a column | method | score | threshold | drifted table."""
        drifted = len(self.drifted_columns)
        judged = sum(column.judged for column in self.columns)
        verdict = "DRIFT" if self.dataset_drift else "no drift"
        lines = [
            f"Dataset: **{verdict}** -- {drifted} of {judged} judged columns drifted "
            f"({len(self.columns) - judged} with too few values shown, not counted) "
            f"({self.drift_share:.0%}; dataset drift at >= {self.share_threshold:.0%}); "
            f"rows reference/current {self.reference_rows:,}/{self.current_rows:,}, "
            f"sampled {self.sampled_rows[0]:,}/{self.sampled_rows[1]:,} (seed {self.sample_seed}).",
            "",
            "| column | method | score | threshold | drifted |",
            "| --- | --- | ---: | ---: | :---: |",
        ]
        for column in self.columns:
            lines.append(
                f"| {_markdown_cell(column.column)} | {_markdown_cell(column.method)} | {column.score:.4g} "
                f"| {column.threshold:.4g} | {'yes' if column.drifted else 'no'}"
                f"{'' if column.judged else ' (not counted: too few values)'} |"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class DriftSettings:
    """What to compare and how; ``None`` methods/thresholds mean Evidently's defaults.

    Method names are Evidently's registered stat-test names ('wasserstein', 'jensenshannon', 'psi', 'ks', ...).
    The sampled fast path only agrees with the full-data run for DISTANCE methods (the defaults, psi,
    hellinger, ...): a p-value test (ks, chisquare, z, ...) grows more significant with more rows, so its
    verdict on a sample is not the verdict on all rows.
    """

    #: Dataset drift when at least this share of the judged columns drifted. 0.05 = any one of the 18 packaged
    #: features: in the decision study a new acquisition channel moved only the channel column at the first
    #: refresh after it, and with sparse columns not counted no undrifted partition had a drifted column
    #: (docs/DECISIONS.md). An alarm only costs a refresh; the promotion gates keep that refresh safe.
    drift_share: float = 0.05
    num_method: str | None = None
    cat_method: str | None = None
    per_column_method: Mapping[str, str] | None = None
    per_column_threshold: Mapping[str, float] | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 0
    #: A column with fewer usable values than this on either side (all rows, not the sample) is shown but not
    #: counted in the drift share: Evidently itself only trusts a distance above 1000 reference values, and
    #: in the decision study (docs/DECISIONS.md) a mostly-NULL column (days_since_last_purchase, a few
    #: hundred values per partition) was the one that raised false alarms on undrifted data.
    min_column_values: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if int(self.sample_size) != self.sample_size or self.sample_size <= _EVIDENTLY_SMALL_REFERENCE:
            # At <= 1000 reference rows Evidently would switch to p-value tests, and distance estimates on
            # so few rows are too noisy to agree with the full data anyway.
            raise ValueError(f"sample_size must be an integer > {_EVIDENTLY_SMALL_REFERENCE}, got {self.sample_size}")
        if int(self.min_column_values) != self.min_column_values or self.min_column_values < 1:
            raise ValueError(f"min_column_values must be an integer >= 1, got {self.min_column_values}")
        for column, threshold in (self.per_column_threshold or {}).items():
            if not math.isfinite(threshold):
                raise ValueError(f"threshold for column {column!r} must be finite, got {threshold}")

    def method_for(self, column: str, kind: str) -> str | None:
        """The method asked for this column (per-column beats per-kind), or None for Evidently's default."""
        if self.per_column_method and column in self.per_column_method:
            return self.per_column_method[column]
        return self.num_method if kind == NUMERICAL else self.cat_method

    def threshold_for(self, column: str) -> float | None:
        if self.per_column_threshold and column in self.per_column_threshold:
            return float(self.per_column_threshold[column])
        return None


# ---------------------------------------------------------------------------------------------------------
# columns
# ---------------------------------------------------------------------------------------------------------


def column_kind(series: pd.Series) -> str | None:
    """NUMERICAL for numbers, CATEGORICAL for strings/categories/booleans, None for anything else (dates)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return CATEGORICAL  # two values: a category, not a quantity to take distances over
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMERICAL
    if (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return CATEGORICAL
    return None


def drift_columns(frame: pd.DataFrame) -> dict[str, str]:
    """Feature columns of a dataset frame (all but entity_id/as_of_date/label) mapped to their kind."""
    kinds: dict[str, str] = {}
    for name in frame.columns:
        if name in NON_FEATURE_COLUMNS:
            continue
        kind = column_kind(frame[name])
        if kind is None:
            raise ValueError(f"column {name!r} has dtype {frame[name].dtype}: drift needs numbers or categories")
        kinds[str(name)] = kind
    return kinds


def _resolve_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None
) -> dict[str, str]:
    if len(reference) == 0 or len(current) == 0:
        raise ValueError(f"both frames need rows: reference has {len(reference)}, current has {len(current)}")
    if columns is None:
        columns = list(drift_columns(reference))
    columns = list(columns)
    if not columns:
        raise ValueError("no feature columns to check for drift")
    if len(set(columns)) != len(columns):
        raise ValueError(f"columns listed twice: {sorted({c for c in columns if columns.count(c) > 1})}")
    for side, frame in (("reference", reference), ("current", current)):
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise ValueError(f"{side} frame lacks columns {missing}")
    kinds: dict[str, str] = {}
    for column in columns:
        reference_kind, current_kind = column_kind(reference[column]), column_kind(current[column])
        if reference_kind is None or reference_kind != current_kind:
            raise ValueError(
                f"column {column!r}: dtypes {reference[column].dtype} (reference) and {current[column].dtype} "
                "(current) must both be numeric or both categorical"
            )
        kinds[column] = reference_kind
    return kinds


def _usable_values(series: pd.Series, kind: str) -> np.ndarray:
    """The values Evidently keeps for a column: it drops NULLs and, for numbers, +-inf."""
    if kind == NUMERICAL:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return values[np.isfinite(values)]
    return series.dropna().to_numpy()


def _prepared(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Dtypes Evidently handles: nullable numbers -> float64 (NA -> NaN), string/category -> object.

    Booleans stay as they are: as objects, Evidently's inf-replacement would trigger a pandas downcasting
    FutureWarning on every run.
    """
    out = {}
    for column, kind in kinds.items():
        series = frame[column]
        if kind == NUMERICAL and pd.api.types.is_extension_array_dtype(series.dtype):
            series = pd.Series(series.to_numpy(dtype=np.float64, na_value=np.nan), index=series.index)
        elif kind == CATEGORICAL and not (
            pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)
        ):
            series = series.astype(object).where(series.notna(), None)
        out[column] = series
    return pd.DataFrame(out, index=frame.index)


def _usable_count(series: pd.Series, kind: str) -> int:
    """len(_usable_values(...)) without building the array (this runs on every full-size column)."""
    if kind == NUMERICAL:
        if pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_extension_array_dtype(series.dtype):
            return len(series)  # numpy integers hold no NULL and no inf
        return int(np.count_nonzero(np.isfinite(series.to_numpy(dtype=np.float64, na_value=np.nan))))
    return int(series.notna().sum())


def _usable_counts(
    frame: pd.DataFrame, kinds: Mapping[str, str], side: str, full_frame: pd.DataFrame | None = None
) -> dict[str, int]:
    """Values Evidently will keep per column; a column with none would make it fail, so say which.

    ``full_frame`` is the frame ``frame`` was sampled from: it is only scanned to word the error.
    """
    counts = {column: _usable_count(frame[column], kind) for column, kind in kinds.items()}
    empty = [column for column, count in counts.items() if count == 0]
    if empty:
        if full_frame is not None and any(_usable_count(full_frame[c], kinds[c]) for c in empty):
            raise ValueError(f"the {side} sample has no non-null values in columns {empty}; raise sample_size")
        raise ValueError(f"{side} has no non-null values in columns {empty}: drift is undefined")
    return counts


# ---------------------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------------------


def _evidently_default_method(kind: str, reference_values: int, distinct_values: int) -> str | None:
    """Mirror of Evidently's default choice when it is a distance, None when it would be a p-value test.

    Only the distance branch is pinned: Evidently returns chi-square for low-cardinality NUMERIC columns on
    small references, a pairing its name registry refuses, so that branch is left to Evidently itself.
    A unit test checks this mirror against evidently's own ``_get_default_stattest``.
    """
    if reference_values <= _EVIDENTLY_SMALL_REFERENCE:
        return None
    if kind == NUMERICAL and distinct_values > _LOW_CARDINALITY:
        return "wasserstein"
    return "jensenshannon"


def _distinct(*columns: pd.Series) -> int:
    return int(pd.unique(np.concatenate([_usable_values(column, NUMERICAL) for column in columns])).size)


def _full_data_default_method(
    column: str,
    kind: str,
    reference_values: int,
    full: tuple[pd.DataFrame, pd.DataFrame],
    sample: tuple[pd.DataFrame, pd.DataFrame],
) -> str | None:
    """Evidently's default for the FULL column, so that a sample cannot change the method.

    A sample can hold fewer distinct values (a rare 6th value missing flips Wasserstein to Jensen-Shannon) or
    fewer non-null reference values than the full data; both feed Evidently's choice. The distinct count
    of the sample is a lower bound, so the full count is only computed when the sample shows <= 5 values.
    """
    if kind != NUMERICAL:
        return _evidently_default_method(kind, reference_values, 0)
    distinct = _distinct(sample[0][column], sample[1][column])
    if distinct <= _LOW_CARDINALITY:
        distinct = _distinct(full[0][column], full[1][column])
    return _evidently_default_method(kind, reference_values, distinct)


def _registered_name(method: str) -> str:
    """Evidently reports auto-chosen methods by display name ('Wasserstein distance (normed)'): map to the name."""
    from evidently.legacy.calculations import stattests
    from evidently.legacy.calculations.stattests.registry import StatTest

    for candidate in vars(stattests).values():
        if isinstance(candidate, StatTest) and method in (candidate.name, candidate.display_name):
            return candidate.name
    return method


# ---------------------------------------------------------------------------------------------------------
# running Evidently
# ---------------------------------------------------------------------------------------------------------


def _run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, str],
    methods: Mapping[str, str | None],
    settings: DriftSettings,
    html_path: str | Path | None,
    judged: Mapping[str, bool],
) -> tuple[list[ColumnDrift], bool, float]:
    """One Evidently Report of ValueDrift per column; verdicts read back from its own results and tests.

    Not DataDriftPreset itself: the preset's rendering recomputes every column twice more (DriftedColumnsCount
    and the drift table), ~2.5x the time of the ValueDrift metrics it is built from, for the same verdicts.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[column for column, kind in kinds.items() if kind == NUMERICAL],
        categorical_columns=[column for column, kind in kinds.items() if kind == CATEGORICAL],
    )
    metrics = [
        ValueDrift(column=column, method=methods[column], threshold=settings.threshold_for(column)) for column in kinds
    ]
    # include_tests=True attaches each column's pass/fail: the only place drift_detected is exposed, and
    # the direction of "drifted" differs between distances (score >= threshold) and p-values (score < threshold).
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(_prepared(current, kinds), data_definition=definition),
        Dataset.from_pandas(_prepared(reference, kinds), data_definition=definition),
    )
    payload = snapshot.dict()
    configs = {}
    for metric in payload["metrics"]:
        config = metric.get("config", {})
        if config.get("type") == _VALUE_DRIFT_TYPE:
            configs[config["column"]] = (config, float(metric["value"]))
    statuses = {}
    for test in payload["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == _VALUE_DRIFT_TYPE:
            statuses[params["column"]] = test["status"]
    missing = [column for column in kinds if column not in configs or column not in statuses]
    if missing:
        raise RuntimeError(f"Evidently returned no drift result for columns {missing}")

    results = []
    for column, kind in kinds.items():
        config, score = configs[column]
        results.append(
            ColumnDrift(
                column=column,
                kind=kind,
                method=_registered_name(str(config["method"])),
                score=score,
                threshold=float(config["threshold"]),
                drifted=statuses[column] == "FAIL",
                judged=bool(judged[column]),
            )
        )
    counted = [result for result in results if result.judged]
    # No column with enough values: nothing can be said, which is not drift.
    share = sum(result.drifted for result in counted) / len(counted) if counted else 0.0
    if html_path is not None:
        from refresh_assets.core.artifacts import atomic_write_text

        atomic_write_text(html_path, snapshot.get_html_str(as_iframe=False))
    # Same comparison as Evidently's get_dataset_drift: share_drifted_columns >= drift_share.
    return results, bool(counted) and bool(share >= settings.drift_share), share


def _uniform_sample(frame: pd.DataFrame, size: int, seed: np.random.SeedSequence) -> pd.DataFrame:
    """``size`` rows drawn uniformly without replacement (all rows if fewer), kept in their original order."""
    if len(frame) <= size:
        return frame
    positions = np.random.default_rng(seed).choice(len(frame), size=size, replace=False)
    positions.sort()  # original order keeps Evidently's index-binned plots meaningful
    return frame.take(positions)


def _check_overrides_name_columns(settings: DriftSettings, kinds: Mapping[str, str]) -> None:
    """A per-column method or threshold for a column that is not checked is a typo: say so, do not ignore it."""
    named = set(settings.per_column_method or {}) | set(settings.per_column_threshold or {})
    unknown = sorted(named - set(kinds))
    if unknown:
        raise ValueError(f"per_column_method / per_column_threshold name column(s) {unknown} that the drift check "
                         f"does not compare; its columns: {sorted(kinds)}")


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str] | None = None,
    settings: DriftSettings = DriftSettings(),
    html_path: str | Path | None = None,
) -> DriftResult:
    """Evidently drift verdicts on a seeded uniform sample of ``settings.sample_size`` rows per side.

    ``columns`` defaults to every column except entity_id/as_of_date/label; numbers are numerical, strings/
    categories/booleans categorical. Methods left to Evidently are resolved on the FULL data first (its rule
    depends on row and distinct-value counts, which a sample can change) and pinned for the sampled run.
    ``html_path`` gets Evidently's HTML report of this same run, written atomically. ``seconds`` includes
    importing Evidently (~3 s the first time in a process).
    """
    started = time.perf_counter()
    kinds = _resolve_columns(reference, current, columns)
    _check_overrides_name_columns(settings, kinds)
    reference_seed, current_seed = np.random.SeedSequence(settings.seed).spawn(2)
    reference_sample = _uniform_sample(reference, settings.sample_size, reference_seed)
    current_sample = _uniform_sample(current, settings.sample_size, current_seed)
    sampled_reference_values = _usable_counts(reference_sample, kinds, "reference", reference)
    _usable_counts(current_sample, kinds, "current", current)
    # Evidently's rule looks at the non-null reference count; a sample count above the cut-off implies the
    # full one is too, so full columns are only scanned when the sample is at or below it.
    reference_values = {
        column: count if count > _EVIDENTLY_SMALL_REFERENCE else _usable_count(reference[column], kinds[column])
        for column, count in sampled_reference_values.items()
    }

    methods = {
        column: settings.method_for(column, kind)
        or _full_data_default_method(
            column, kind, reference_values[column], (reference, current), (reference_sample, current_sample)
        )
        for column, kind in kinds.items()
    }

    return _evidently_result(reference, current, reference_sample, current_sample, kinds, methods, settings,
                             html_path, started)


def check_drift_full(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str] | None = None,
    settings: DriftSettings = DriftSettings(),
    html_path: str | Path | None = None,
) -> DriftResult:
    """Evidently on ALL rows with its own method choice: the slow baseline ``check_drift`` must agree with.

    ``settings.sample_size`` and ``seed`` are ignored (recorded seed is settings.seed, sampled_rows = all rows).
    """
    started = time.perf_counter()
    kinds = _resolve_columns(reference, current, columns)
    _usable_counts(reference, kinds, "reference")
    _usable_counts(current, kinds, "current")
    methods = {column: settings.method_for(column, kind) for column, kind in kinds.items()}
    return _evidently_result(reference, current, reference, current, kinds, methods, settings, html_path, started)


def _evidently_result(reference, current, reference_rows_seen, current_rows_seen, kinds, methods, settings,
                      html_path, started) -> DriftResult:
    """Run Evidently on the rows it is to see and wrap its verdicts with the sizes and the time taken."""
    judged = {
        column: min(_usable_count(reference[column], kind), _usable_count(current[column], kind))
        >= settings.min_column_values
        for column, kind in kinds.items()
    }
    results, dataset_drift, share = _run_evidently(
        reference_rows_seen, current_rows_seen, kinds, methods, settings, html_path, judged
    )
    return DriftResult(
        dataset_drift=dataset_drift,
        drift_share=share,
        share_threshold=settings.drift_share,
        columns=tuple(results),
        reference_rows=len(reference),
        current_rows=len(current),
        sampled_rows=(len(reference_rows_seen), len(current_rows_seen)),
        sample_seed=settings.seed,
        seconds=time.perf_counter() - started,
    )
