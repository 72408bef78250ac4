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

The distances ignore NULLs, so two checks of our own run beside them on every column (see
``DriftSettings.null_share_delta``): **missingness** -- the NULL share of the reference vs the current
data, and, for categorical columns, **collapse** -- the share of the current data's most common value in
the current vs the reference values. A column whose feed broke (NULL share 2% -> 60%) or whose category
silently became one value keeps a small distance yet is flagged drifted by these, with the check's name
(``null_share`` / ``top_value_share``) as the reason.

Evidently is imported inside the functions: importing it takes seconds and the Dagster code location
must load fast (a test checks that importing this module leaves ``evidently`` out of ``sys.modules``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
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

#: Names of the two share checks that run beside Evidently's distance (``ShareCheck.method``).
NULL_SHARE = "null_share"
TOP_VALUE_SHARE = "top_value_share"

#: A share check flags a column only when the share moved by at least this much (absolute) ...
#:
#: Why 0.10: the check must not call a real but harmless wobble drift -- on 50,000 rows a side a NULL share
#: going from 2% to 3% is "significant" (z ~ 10: the z-test alone flagged 100% of such draws) and means
#: nothing -- while a feed that broke moves the share by tens of points. Measured on the decision study's
#: no-change games (30 seeds, ~2,000 scoring rows vs the champion's ~6,000 training rows), the largest
#: natural change of any feature's NULL share was 0.037 and of a category's top-value share 0.030 (none
#: reached 0.05); in games of a quarter of the size (~500 vs ~1,500 rows, not judged at the default
#: min_column_values) 0.042 and 0.069. 0.10 keeps a margin of ~2.7x over the judged worst case (real data
#: varies more than the simulation, where one feature has NULLs at all) and still catches a feed that
#: lost 30% of its rows on a column up to 2/3 NULL already (NULLing 30% of the rows moves the share by
#: 0.3 x (1 - its NULL share)). A collapse of 30% of the rows onto the top value moves that share by
#: 0.3 x (1 - its share): >= 0.15 for the packaged categories (top shares 0.29-0.5).
DEFAULT_SHARE_DELTA = 0.10
#: ... AND a two-proportion z-test (pooled, two-sided) on the sizes the shares were taken on says p < this.
#: Measured with no change at all (refresh_assets_tests/benchmarks/bench_share_checks.py, 200,000 draws per
#: line, shares 0.02-0.9): the z-test alone fires at its nominal ~0.1% per check at every size (~2% of
#: partitions with 18 features), the 0.10 change alone at <= 5e-6 from 1,000 values a side up, but at 18% on
#: 100 values; the two together at <= 5e-6 from 1,000 values a side and <= 0.1% at 100-500. So at the
#: default min_column_values (1000) the change binds and the test only matters when that is lowered.
DEFAULT_SHARE_ALPHA = 0.001


# ---------------------------------------------------------------------------------------------------------
# results and settings
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareCheck:
    """A share in the reference vs the current data, the test of it, and its verdict (a check the distances,
    which ignore NULLs and look at whole distributions, cannot make).

    ``null_share``: share of rows that are NULL (for numbers also +-inf, which Evidently drops too), taken on
    ALL rows (one pass; ``sizes`` are row counts). ``top_value_share``: share, among the non-null values, of
    the current data's most common value ``value``, in the reference and in the current data, taken on the
    rows Evidently saw (the sample; ``sizes`` are its non-null counts). Drift when the share moved by at least
    ``delta`` (null_share: either way; top_value_share: up -- a collapse onto one value, or a new default
    value such as 'unknown' taking over; a value losing share is left to the distance) and the
    two-proportion z-test's ``p_value`` is below ``alpha``.
    """

    method: str  # NULL_SHARE | TOP_VALUE_SHARE
    reference: float
    current: float
    sizes: tuple[int, int]  # (reference, current) denominators of the shares
    p_value: float
    delta: float
    alpha: float
    drifted: bool  # never True when not judged
    judged: bool  # False: fewer than min_column_values rows (null_share) / values (top_value_share) on a side
    value: str | None = None  # top_value_share: the current data's most common value

    @property
    def change(self) -> float:
        return self.current - self.reference

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reference": _json_float(self.reference),
            "current": _json_float(self.current),
            "change": _json_float(self.change),
            "sizes": [int(size) for size in self.sizes],
            "p_value": _json_float(self.p_value),
            "delta": float(self.delta),
            "alpha": float(self.alpha),
            "drifted": bool(self.drifted),
            "judged": bool(self.judged),
            **({"value": self.value} if self.method == TOP_VALUE_SHARE else {}),
        }

    def describe(self) -> str:
        """e.g. 'NULL 2.0% -> 60.0%' or "top 'ios' 50.0% -> 92.0%"."""
        what = "NULL" if self.method == NULL_SHARE else f"top {self.value!r}"
        return f"{what} {self.reference:.1%} -> {self.current:.1%}"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: Evidently's distance plus the share checks (``checks``).

    ``method``/``score``/``threshold`` are Evidently's (``method`` is the registered name, e.g. 'wasserstein'),
    ``distance_drifted``/``distance_judged`` its verdict and whether it had enough values (``min_column_values``
    non-null values per side). ``drifted`` and ``judged`` are the column's verdict, what the drift share
    counts: the share checks only ever ADD drift -- a column one of them flagged is judged and drifted (even
    if its distance had too few values, as when a broken feed leaves a column mostly NULL); a column none of
    them flagged keeps the distance's verdict exactly (judged only with enough values, as before).
    ``drifted_by`` names the checks behind a counted drift. Built without checks (the distance alone), the
    distance fields default to ``drifted``/``judged``.
    """

    column: str
    kind: str  # NUMERICAL | CATEGORICAL
    method: str
    score: float
    threshold: float
    drifted: bool
    judged: bool = True  # False: too few values on a side (min_column_values); shown, not counted in the share
    checks: tuple[ShareCheck, ...] = ()
    distance_drifted: bool | None = None  # None: same as drifted
    distance_judged: bool | None = None  # None: same as judged

    def __post_init__(self) -> None:
        if self.distance_drifted is None:
            object.__setattr__(self, "distance_drifted", bool(self.drifted))
        if self.distance_judged is None:
            object.__setattr__(self, "distance_judged", bool(self.judged))

    @property
    def drifted_by(self) -> tuple[str, ...]:
        """The judged checks that found drift: the distance's method name, 'null_share', 'top_value_share'."""
        by = [self.method] if self.distance_drifted and self.distance_judged else []
        return tuple(by + [check.method for check in self.checks if check.drifted and check.judged])

    def check(self, method: str) -> ShareCheck | None:
        return next((check for check in self.checks if check.method == method), None)


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
                    "drifted_by": list(column.drifted_by),
                    "distance_drifted": bool(column.distance_drifted),
                    "distance_judged": bool(column.distance_judged),
                    **{check.method: check.to_dict() for check in column.checks},
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
        """A one-line verdict, a column | method | score | threshold | drifted table (the distance; 'drifted' is
        the column's verdict, naming the checks that fired when not just the distance), then the share checks:
        column | NULL share | most common value's share | flagged."""
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
                f"| {column.threshold:.4g} | {_markdown_cell(_verdict_cell(column))} |"
            )
        if any(column.checks for column in self.columns):
            checks = [check for column in self.columns for check in column.checks]
            rules = ", ".join(sorted({
                f"{check.method} moved {'by' if check.method == NULL_SHARE else 'up by'} >= {check.delta:g}"
                for check in checks}))
            lines += [
                "",
                f"Share checks (Evidently's distances ignore NULLs): drift when {rules} "
                f"and a two-proportion z-test gives p < {min(check.alpha for check in checks):g}.",
                "",
                "| column | NULL share reference -> current | most common value: share reference -> current "
                "| flagged |",
                "| --- | --- | --- | --- |",
            ]
            for column in self.columns:
                if not column.checks:
                    continue
                null, top = column.check(NULL_SHARE), column.check(TOP_VALUE_SHARE)
                flagged = [check.method for check in column.checks if check.drifted]
                unjudged = [check.method for check in column.checks if not check.judged]
                note = ", ".join(flagged) or "no"
                if unjudged:
                    note += f" ({', '.join(unjudged)} not judged: too few rows/values)"
                lines.append(
                    f"| {_markdown_cell(column.column)} "
                    f"| {_share_cell(null)} "
                    f"| {_share_cell(top, with_value=True)} | {_markdown_cell(note)} |"
                )
        return "\n".join(lines)


def _verdict_cell(column: ColumnDrift) -> str:
    if not column.judged:
        return f"{'yes' if column.drifted else 'no'} (not counted: too few values)"
    if not column.drifted:
        return "no"
    return "yes" if column.drifted_by == (column.method,) else f"yes ({', '.join(column.drifted_by)})"


def _share_cell(check: ShareCheck | None, with_value: bool = False) -> str:
    if check is None:
        return "-"
    value = f"{check.value!r} " if with_value else ""
    return (f"{_markdown_cell(value)}{check.reference:.1%} -> {check.current:.1%} "
            f"({check.change * 100:+.1f} pts, p {check.p_value:.2g})")


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
    #: hundred values per partition) was the one that raised false alarms on undrifted data. The NULL-share
    #: check asks as many ROWS per side (a broken feed leaves few values, but its NULL share is well measured).
    min_column_values: int = 1000
    #: Missingness: a column drifts when its NULL share (all rows) moved by at least this much, either way,
    #: and the two-proportion test agrees (``share_alpha``). 0 or None: off. See ``DEFAULT_SHARE_DELTA``.
    null_share_delta: float | None = DEFAULT_SHARE_DELTA
    #: Collapse (categorical columns): a column drifts when the share of the current data's most common value
    #: rose by at least this much over its share in the reference (and the test agrees). 0 or None: off.
    top_value_delta: float | None = DEFAULT_SHARE_DELTA
    #: Significance level of the two-proportion z-test both share checks also require.
    share_alpha: float = DEFAULT_SHARE_ALPHA

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
        for name in ("null_share_delta", "top_value_delta"):
            delta = getattr(self, name)
            if delta is not None and not 0.0 <= delta <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (0 or None: check off), got {delta}")
        if not 0.0 < self.share_alpha <= 1.0:
            raise ValueError(f"share_alpha must be in (0, 1], got {self.share_alpha}")

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
) -> list[ColumnDrift]:
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
    if html_path is not None:
        from refresh_assets.core.artifacts import atomic_write_text

        atomic_write_text(html_path, snapshot.get_html_str(as_iframe=False))
    return results


# ---------------------------------------------------------------------------------------------------------
# share checks: what the distances cannot see
# ---------------------------------------------------------------------------------------------------------


def two_proportion_p_value(reference_hits: int, reference_size: int, current_hits: int, current_size: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when either side is empty or the pooled share
    is 0 or 1: no evidence of a difference)."""
    if reference_size <= 0 or current_size <= 0:
        return 1.0
    pooled = (reference_hits + current_hits) / (reference_size + current_size)
    variance = pooled * (1.0 - pooled) * (1.0 / reference_size + 1.0 / current_size)
    if variance <= 0.0:
        return 1.0
    z = (current_hits / current_size - reference_hits / reference_size) / math.sqrt(variance)
    return float(math.erfc(abs(z) / math.sqrt(2.0)))


def _share_check(method: str, hits: tuple[int, int], sizes: tuple[int, int], delta: float, settings: DriftSettings,
                 judged: bool, upward_only: bool, value: str | None = None) -> ShareCheck:
    reference = hits[0] / sizes[0] if sizes[0] else 0.0
    current = hits[1] / sizes[1] if sizes[1] else 0.0
    change = current - reference if upward_only else abs(current - reference)
    p_value = two_proportion_p_value(hits[0], sizes[0], hits[1], sizes[1])
    # a hair of tolerance: 0.3 - 0.2 is 0.09999999999999998 in floats, and a change of exactly delta is meant to count
    drifted = judged and change >= delta - 1e-12 and p_value < settings.share_alpha
    return ShareCheck(method=method, reference=reference, current=current, sizes=sizes, p_value=p_value,
                      delta=delta, alpha=settings.share_alpha, drifted=bool(drifted), judged=bool(judged), value=value)


def _enabled(delta: float | None) -> bool:
    return delta is not None and delta > 0


def _top_value_counts(series: pd.Series) -> pd.Series:
    """Non-null value counts, most common first, ties by the value's text (same input, same answer)."""
    counts = series.value_counts(dropna=True)
    counts = counts[counts > 0]  # a category dtype lists unused categories with 0
    if counts.empty:
        return counts
    order = sorted(range(len(counts)), key=lambda i: (-int(counts.iloc[i]), str(counts.index[i])))
    return counts.iloc[order]


def _share_checks(column: str, kind: str, full_rows: tuple[int, int], full_values: tuple[int, int],
                  seen: tuple[pd.DataFrame, pd.DataFrame], settings: DriftSettings) -> tuple[ShareCheck, ...]:
    """The column's NULL-share check (all rows: the counts are already known) and, for a categorical column, its
    top-value-share check (on the rows Evidently saw: value counts of a 1M-row text column cost ~0.1-0.2 s a
    side, of the 50k sample milliseconds)."""
    checks = []
    if _enabled(settings.null_share_delta):
        nulls = (full_rows[0] - full_values[0], full_rows[1] - full_values[1])
        checks.append(_share_check(NULL_SHARE, nulls, full_rows, float(settings.null_share_delta), settings,
                                   judged=min(full_rows) >= settings.min_column_values, upward_only=False))
    if kind == CATEGORICAL and _enabled(settings.top_value_delta):
        current_counts = _top_value_counts(seen[1][column])
        reference_counts = _top_value_counts(seen[0][column])
        if not current_counts.empty:
            value = current_counts.index[0]
            hits = (int(reference_counts.get(value, 0)), int(current_counts.iloc[0]))
            sizes = (int(reference_counts.sum()), int(current_counts.sum()))
            checks.append(_share_check(TOP_VALUE_SHARE, hits, sizes, float(settings.top_value_delta), settings,
                                       judged=min(full_values) >= settings.min_column_values, upward_only=True,
                                       value=str(value)))
    return tuple(checks)


def _with_checks(distance: ColumnDrift, checks: tuple[ShareCheck, ...]) -> ColumnDrift:
    """The column's verdict from its distance and its share checks (see ColumnDrift): a share check that fired
    (it only fires when judged) makes the column judged and drifted; otherwise the distance's verdict stands."""
    fired = any(check.drifted and check.judged for check in checks)
    return replace(distance, drifted=fired or bool(distance.drifted), judged=fired or bool(distance.judged),
                   checks=checks, distance_drifted=bool(distance.drifted), distance_judged=bool(distance.judged))


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
    """Run Evidently on the rows it is to see, add the share checks, and wrap the verdicts with the sizes and the
    time taken."""
    values = {column: (_usable_count(reference[column], kind), _usable_count(current[column], kind))
              for column, kind in kinds.items()}
    judged = {column: min(counts) >= settings.min_column_values for column, counts in values.items()}
    distances = _run_evidently(reference_rows_seen, current_rows_seen, kinds, methods, settings, html_path, judged)
    results = [
        _with_checks(distance, _share_checks(distance.column, distance.kind, (len(reference), len(current)),
                                             values[distance.column], (reference_rows_seen, current_rows_seen),
                                             settings))
        for distance in distances
    ]
    counted = [result for result in results if result.judged]
    # No column with enough values: nothing can be said, which is not drift.
    share = sum(result.drifted for result in counted) / len(counted) if counted else 0.0
    # Same comparison as Evidently's get_dataset_drift: share_drifted_columns >= drift_share.
    dataset_drift = bool(counted) and bool(share >= settings.drift_share)
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
