"""Holdout comparison of candidate churn models: metrics, paired bootstrap, promotion decision.

Plain numpy + scikit-learn (imported inside functions) so the Dagster code location loads fast
and every piece can be tested without Dagster.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

PRIMARY_METRIC = "roc_auc"

# Direction of each metric the comparison understands. Metrics not listed are treated as
# higher-is-better, which is what "best" means for every score-like metric we report.
LOWER_IS_BETTER = frozenset({"log_loss", "brier"})
BOOTSTRAP_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")

_PROBABILITY_CLIP = 1e-15
# Bootstrap replicates are processed in blocks of about this many (replicate x row) cells: ~2 MB
# per float64 matrix stays cache-resident, measured ~2x faster than 16 MB blocks at n=50k.
_BOOTSTRAP_BLOCK_CELLS = 262_144
# Give up redrawing single-class resamples after this many draws per requested replicate: with that
# many failures the holdout is too small or too unbalanced for a bootstrap to mean anything.
_MAX_DRAWS_PER_REPLICATE = 50


def higher_is_better(metric: str) -> bool:
    """True unless the metric is a loss; used wherever 'best' or 'gain' must be oriented."""
    return metric not in LOWER_IS_BETTER


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------


def _as_binary_labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("y is empty: cannot evaluate a model on zero rows")
    if y.dtype == bool:
        return y.astype(np.int64)
    try:
        y_float = y.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"y must hold 0/1 labels, got dtype {y.dtype}") from error
    if not np.all((y_float == 0) | (y_float == 1)):
        bad = np.unique(y_float[~((y_float == 0) | (y_float == 1))])[:5]
        raise ValueError(f"y must hold only 0/1 labels (no NULL/NaN); found e.g. {bad.tolist()}")
    return y_float.astype(np.int64)


def _require_both_classes(y: np.ndarray) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        only = "1" if positives else "0"
        raise ValueError(
            f"y has a single class (all {only}, n={y.size}): ranking and calibration metrics are undefined"
        )


def _as_scores(p: Any, n: int, name: str = "p") -> np.ndarray:
    scores = np.asarray(p, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {scores.shape}")
    if scores.size != n:
        raise ValueError(f"lengths differ: y has {n} rows but {name} has {scores.size}")
    if np.isnan(scores).any():
        raise ValueError(f"{name} contains {int(np.isnan(scores).sum())} NaN value(s)")
    return scores


def _as_probabilities(p: Any, n: int, name: str = "p") -> np.ndarray:
    probabilities = _as_scores(p, n, name)
    outside = (probabilities < 0) | (probabilities > 1)
    if outside.any():
        raise ValueError(
            f"{name} must be probabilities in [0, 1]; {int(outside.sum())} value(s) outside, "
            f"e.g. {probabilities[outside][0]!r}"
        )
    return probabilities


def _validated(y_true: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _as_binary_labels(y_true)
    probabilities = _as_probabilities(p, y.size)
    _require_both_classes(y)
    return y, probabilities


# --------------------------------------------------------------------------------------------
# point metrics
# --------------------------------------------------------------------------------------------


def _top_k_count(top_k: float, n: int) -> int:
    if not 0 < top_k <= 1:
        raise ValueError(f"top_k must be a fraction in (0, 1], got {top_k}")
    # round() first: 0.07 * 100 is 7.000000000000001 in floating point and must flag 7 rows, not 8.
    return max(1, math.ceil(round(top_k * n, 9)))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Cox logistic recalibration: fit P(y=1) = sigmoid(a + b * logit(p)) by plain maximum likelihood.

    b (slope) = 1 and a (intercept) = 0 means the probabilities are calibrated; b > 1 means they
    are too timid (squashed toward 0.5), b < 1 too extreme. The fit is unpenalised (C=inf) because
    any shrinkage would pull the slope toward 0 and fake over-confidence. Returns NaNs when p is
    constant (the slope is then not identifiable). If p separates the classes perfectly the MLE
    does not exist and the slope is merely "large" (where the solver stopped).
    """
    from sklearn.linear_model import LogisticRegression

    clipped = np.clip(p, _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    logit = np.log(clipped) - np.log1p(-clipped)
    if np.ptp(logit) == 0:
        return math.nan, math.nan
    recalibration = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000)
    recalibration.fit(logit.reshape(-1, 1), y)
    return float(recalibration.coef_[0, 0]), float(recalibration.intercept_[0])


def classification_metrics(y_true: Any, p: Any, top_k: float = 0.1) -> dict[str, float]:
    """Every holdout figure the comparison and the report need, from labels and probabilities.

    precision/recall_at_top_k flag the ceil(top_k * n) highest scores (the players a retention
    campaign would target); ties are broken by row order (stable descending sort) so the figure is
    reproducible. calibration_slope/intercept come from :func:`calibration_slope_intercept`.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, probabilities = _validated(y_true, p)
    n = int(y.size)
    positives = int(y.sum())

    flagged_count = _top_k_count(top_k, n)
    flagged = np.argsort(-probabilities, kind="stable")[:flagged_count]
    true_positives_flagged = int(y[flagged].sum())

    slope, intercept = calibration_slope_intercept(y, probabilities)
    clipped = np.clip(probabilities, _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    return {
        "roc_auc": float(roc_auc_score(y, probabilities)),
        "pr_auc": float(average_precision_score(y, probabilities)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, probabilities)),
        "precision_at_top_k": true_positives_flagged / flagged_count,
        "recall_at_top_k": true_positives_flagged / positives,
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "n": n,
        "positives": positives,
        "label_rate": positives / n,
    }


# --------------------------------------------------------------------------------------------
# weighted ranking metrics, vectorised over many weight vectors (the bootstrap's engine)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SortedScores:
    """One model's rows sorted once by ascending score, reused by every bootstrap replicate."""

    order: np.ndarray  # row indices in ascending score order (stable)
    y_sorted: np.ndarray  # float64 labels in that order
    group_starts: np.ndarray | None  # first position of each run of tied scores; None if no ties


def _sort_scores(y: np.ndarray, scores: np.ndarray) -> _SortedScores:
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    is_new_value = np.empty(sorted_scores.size, dtype=bool)
    is_new_value[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_new_value[1:])
    group_starts = None if is_new_value.all() else np.flatnonzero(is_new_value)
    return _SortedScores(order=order, y_sorted=y[order].astype(np.float64), group_starts=group_starts)


def _batch_weighted_auc(
    weights_sorted: np.ndarray, ranked: _SortedScores, positive_weight: np.ndarray
) -> np.ndarray:
    """ROC AUC for each row of a (replicates, n) weight matrix whose columns are in score order.

    Weighted Mann-Whitney: AUC = sum over (pos i, neg j) w_i w_j ([s_j < s_i] + 1/2 [s_j = s_i])
    / (W_pos W_neg). Summing over ALL j instead of negatives only adds exactly W_pos^2 / 2 (each
    unordered positive pair contributes w_i w_j once, each positive with itself w_i^2 / 2), so
    one cumulative sum of all weights per replicate is enough; no split by class is needed.
    """
    if ranked.group_starts is None:
        group_weight, group_positive_weight_of = weights_sorted, None
    else:
        group_weight = np.add.reduceat(weights_sorted, ranked.group_starts, axis=1)
        group_positive_weight_of = np.add.reduceat(
            weights_sorted * ranked.y_sorted, ranked.group_starts, axis=1
        )
    # Weight at or below each (group of) score(s); the last column is the total weight.
    cumulative_weight = np.cumsum(group_weight, axis=1)
    negative_weight = cumulative_weight[:, -1] - positive_weight
    # numerator = sum over positive weight of (weight strictly below + half the tied weight)
    #           = sum Wpos * cumulative - 1/2 sum Wpos * W_group, written without temporaries.
    if group_positive_weight_of is None:
        y_sorted = ranked.y_sorted
        numerator = np.einsum("ij,ij,j->i", weights_sorted, cumulative_weight, y_sorted)
        numerator -= 0.5 * np.einsum("ij,ij,j->i", weights_sorted, weights_sorted, y_sorted)
    else:
        numerator = np.einsum("ij,ij->i", group_positive_weight_of, cumulative_weight)
        numerator -= 0.5 * np.einsum("ij,ij->i", group_positive_weight_of, group_weight)
    return (numerator - 0.5 * positive_weight**2) / (positive_weight * negative_weight)


def _batch_weighted_average_precision(
    weights_sorted: np.ndarray, ranked: _SortedScores, positive_weight: np.ndarray
) -> np.ndarray:
    """Average precision (sklearn's step-wise definition) for each row of a sorted weight matrix.

    Walking thresholds from the highest score down, AP = sum over distinct scores of
    (positive weight at that score / W_pos) * precision at that threshold.
    """
    positive_weights = weights_sorted * ranked.y_sorted
    if ranked.group_starts is None:
        group_weight, group_positive_weight = weights_sorted, positive_weights
    else:
        group_weight = np.add.reduceat(weights_sorted, ranked.group_starts, axis=1)
        group_positive_weight = np.add.reduceat(positive_weights, ranked.group_starts, axis=1)
    # Reverse to descending score order: cumulative sums become "flagged at this threshold".
    group_weight = group_weight[:, ::-1]
    group_positive_weight = group_positive_weight[:, ::-1]
    flagged_weight = np.cumsum(group_weight, axis=1)
    flagged_positive_weight = np.cumsum(group_positive_weight, axis=1)
    precision = np.divide(
        flagged_positive_weight,
        flagged_weight,
        out=np.zeros_like(flagged_weight),
        where=flagged_weight > 0,
    )
    return np.einsum("ij,ij->i", group_positive_weight, precision) / positive_weight


def _validated_weights(weights: Any, n: int) -> np.ndarray:
    weight_array = np.asarray(weights, dtype=np.float64)
    if weight_array.shape != (n,):
        raise ValueError(f"lengths differ: y has {n} rows but weights has shape {weight_array.shape}")
    if not np.all(np.isfinite(weight_array)) or (weight_array < 0).any():
        raise ValueError("weights must be finite and non-negative")
    return weight_array


def _weighted_ranking_metric(y: Any, p: Any, weights: Any, batch_metric: Callable) -> float:
    labels = _as_binary_labels(y)
    scores = _as_scores(p, labels.size)
    weight_array = _validated_weights(weights, labels.size)
    positive_weight = float(weight_array @ labels)
    if positive_weight <= 0 or positive_weight >= weight_array.sum():
        raise ValueError("the weighted rows hold a single class: the metric is undefined")
    ranked = _sort_scores(labels, scores)
    weights_sorted = weight_array[ranked.order][np.newaxis, :]
    return float(batch_metric(weights_sorted, ranked, np.array([positive_weight]))[0])


def weighted_auc(y: Any, p: Any, weights: Any) -> float:
    """ROC AUC where row i counts weights[i] times (ties between a positive and a negative count 1/2).

    Integer weights give exactly the AUC of the explicitly repeated rows; that is what makes the
    bootstrap fast (a resample is a vector of multinomial counts, no copying of rows).
    """
    return _weighted_ranking_metric(y, p, weights, _batch_weighted_auc)


def weighted_average_precision(y: Any, p: Any, weights: Any) -> float:
    """Average precision (pr_auc) with per-row weights; equals sklearn's with sample_weight."""
    return _weighted_ranking_metric(y, p, weights, _batch_weighted_average_precision)


# --------------------------------------------------------------------------------------------
# paired bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile interval of metric(challenger) - metric(champion) over paired resamples.

    The difference is always challenger minus champion, so for a loss (log_loss, brier) a
    NEGATIVE difference means the challenger is better.
    """

    metric: str
    observed_diff: float
    lower: float
    upper: float
    n_boot: int
    alpha: float
    seed: int


def _metric_value(y: np.ndarray, p: np.ndarray, metric: str) -> float:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    if metric == "roc_auc":
        return float(roc_auc_score(y, p))
    if metric == "pr_auc":
        return float(average_precision_score(y, p))
    if metric == "log_loss":
        return float(log_loss(y, np.clip(p, _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP), labels=[0, 1]))
    if metric == "brier":
        return float(brier_score_loss(y, p))
    raise ValueError(f"unknown metric {metric!r}; expected one of {BOOTSTRAP_METRICS}")


def _per_row_loss(y: np.ndarray, p: np.ndarray, metric: str) -> np.ndarray:
    if metric == "brier":
        return (p - y) ** 2
    clipped = np.clip(p, _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    return -(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))


def _draw_resample_counts(rng: np.random.Generator, replicates: int, n: int) -> np.ndarray:
    """(replicates, n) float matrix: how often each row is drawn when resampling n rows with
    replacement, i.e. Multinomial(n, 1/n) counts. Built from uniform indices + bincount, which is
    several times faster than Generator.multinomial with n categories."""
    counts = np.empty((replicates, n), dtype=np.float64)
    for replicate in range(replicates):
        counts[replicate] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return counts


def _replicate_diff_function(
    y: np.ndarray, p_challenger: np.ndarray, p_champion: np.ndarray, metric: str
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Return f(counts, positive_weight) -> per-replicate challenger - champion difference."""
    if metric in ("roc_auc", "pr_auc"):
        batch_metric = _batch_weighted_auc if metric == "roc_auc" else _batch_weighted_average_precision
        ranked_challenger = _sort_scores(y, p_challenger)
        ranked_champion = _sort_scores(y, p_champion)

        def ranking_diff(counts: np.ndarray, positive_weight: np.ndarray) -> np.ndarray:
            challenger = batch_metric(
                np.take(counts, ranked_challenger.order, axis=1), ranked_challenger, positive_weight
            )
            champion = batch_metric(
                np.take(counts, ranked_champion.order, axis=1), ranked_champion, positive_weight
            )
            return challenger - champion

        return ranking_diff

    # Mean losses are linear in the counts: one matrix-vector product per block.
    loss_diff = _per_row_loss(y, p_challenger, metric) - _per_row_loss(y, p_champion, metric)

    def mean_loss_diff(counts: np.ndarray, positive_weight: np.ndarray) -> np.ndarray:
        return counts @ loss_diff / y.size

    return mean_loss_diff


def paired_bootstrap_diff(
    y: Any,
    p_challenger: Any,
    p_champion: Any,
    metric: str = "roc_auc",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapResult:
    """Paired percentile bootstrap CI of metric(challenger) - metric(champion) on one holdout.

    Paired: each replicate resamples the holdout rows once and scores BOTH models on those same
    rows, so the large shared row-to-row noise cancels and small real gains become visible.
    A replicate is represented by its multinomial count vector, used as row weights; for the
    ranking metrics each model is sorted once and all replicates of a block are evaluated with a
    few vectorised passes (n=50k, n_boot=1000 takes about a second).
    Resamples that contain a single class (metric undefined) are REDRAWN, so exactly n_boot
    replicates always contribute; this only matters for tiny or extremely unbalanced holdouts.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {BOOTSTRAP_METRICS}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    labels, challenger = _validated(y, p_challenger)
    champion = _as_probabilities(p_champion, labels.size, name="p_champion")
    n = labels.size

    observed_diff = _metric_value(labels, challenger, metric) - _metric_value(labels, champion, metric)
    replicate_diff = _replicate_diff_function(labels, challenger, champion, metric)
    labels_float = labels.astype(np.float64)

    rng = np.random.default_rng(seed)
    diffs = np.empty(int(n_boot), dtype=np.float64)
    block_size = max(1, _BOOTSTRAP_BLOCK_CELLS // n)
    filled = 0
    draws = 0
    while filled < n_boot:
        if draws > _MAX_DRAWS_PER_REPLICATE * n_boot:
            raise ValueError(
                f"could not draw {n_boot} bootstrap resamples with both classes "
                f"(n={n}, positives={int(labels.sum())}): the holdout is too small"
            )
        replicates = min(block_size, n_boot - filled)
        counts = _draw_resample_counts(rng, replicates, n)
        draws += replicates
        positive_weight = counts @ labels_float
        both_classes = (positive_weight > 0) & (positive_weight < n)
        if not both_classes.all():
            counts, positive_weight = counts[both_classes], positive_weight[both_classes]
        kept = counts.shape[0]
        if kept:
            diffs[filled : filled + kept] = replicate_diff(counts, positive_weight)
            filled += kept

    lower, upper = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(
        metric=metric,
        observed_diff=float(observed_diff),
        lower=float(lower),
        upper=float(upper),
        n_boot=int(n_boot),
        alpha=float(alpha),
        seed=int(seed),
    )


# --------------------------------------------------------------------------------------------
# DeLong's test (a second opinion on the ROC AUC difference)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelongResult:
    """DeLong's test of ROC AUC(challenger) - AUC(champion) scored on the same rows (correlated AUCs).

    Reported beside the paired bootstrap, not gated: it is an asymptotic normal approximation, so two
    methods that agree make a decision easier to trust, and a disagreement is worth a look.
    """

    auc_challenger: float
    auc_champion: float
    diff: float
    std_error: float
    z: float
    p_value: float
    lower: float
    upper: float
    alpha: float


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank, along the last axis."""
    from scipy.stats import rankdata

    return rankdata(values, method="average", axis=-1)


def delong_test(y: Any, p_challenger: Any, p_champion: Any, alpha: float = 0.05) -> DelongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) test, computed the fast O(n log n) way of Sun & Xu (2014).

    The structural components (each positive's share of negatives ranked below it, each negative's share of
    positives ranked above it; ties count 1/2) come from midranks instead of the n_pos x n_neg comparison
    matrix, so a 50k-row holdout takes milliseconds.
    """
    from scipy.stats import norm

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    labels, challenger = _validated(y, p_challenger)
    champion = _as_probabilities(p_champion, labels.size, name="p_champion")
    positive = labels == 1
    scores = np.vstack([challenger, champion])  # (2 models, n rows)
    positive_scores, negative_scores = scores[:, positive], scores[:, ~positive]
    n_positive, n_negative = positive_scores.shape[1], negative_scores.shape[1]

    rank_all = _midranks(np.hstack([positive_scores, negative_scores]))
    rank_within_positive = _midranks(positive_scores)
    rank_within_negative = _midranks(negative_scores)
    # Negatives below each positive = its rank among all minus its rank among positives.
    positive_components = (rank_all[:, :n_positive] - rank_within_positive) / n_negative
    negative_components = 1.0 - (rank_all[:, n_positive:] - rank_within_negative) / n_positive
    aucs = positive_components.mean(axis=1)

    covariance = (
        np.cov(positive_components) / n_positive + np.cov(negative_components) / n_negative
        if min(n_positive, n_negative) > 1
        else np.full((2, 2), np.nan)
    )
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    diff = float(aucs[0] - aucs[1])
    std_error = math.sqrt(max(variance, 0.0)) if math.isfinite(variance) else math.nan
    if std_error > 0:
        z = diff / std_error
        p_value = float(2 * norm.sf(abs(z)))
    else:  # identical rankings (or too few rows): no spread to test against
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p_value = 1.0 if diff == 0 else 0.0
    half_width = float(norm.ppf(1 - alpha / 2)) * std_error if std_error > 0 else 0.0
    return DelongResult(
        auc_challenger=float(aucs[0]),
        auc_champion=float(aucs[1]),
        diff=diff,
        std_error=float(std_error),
        z=float(z),
        p_value=p_value,
        lower=diff - half_width,
        upper=diff + half_width,
        alpha=float(alpha),
    )


# --------------------------------------------------------------------------------------------
# decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One promotion check: the figure it looked at, the bar, and whether the challenger cleared it."""

    name: str
    figure: float | None
    threshold: float | None
    passed: bool
    detail: str
    gated: bool = True  # False: reported only (e.g. a slice too small to judge); never blocks a promotion
    # The same gate as the challenger's GAIN over the champion (higher is better, whatever the metric): the
    # observed gain, its interval and the margin its lower end must clear. What a chart of the gates draws;
    # None where the gate has no interval (no champion, a slice too small to judge).
    gain: float | None = None
    gain_interval: tuple[float, float] | None = None
    gain_margin: float | None = None


@dataclass(frozen=True)
class GateContext:
    """Everything a gate check may look at; a dataclass so new fields do not break old checks."""

    y: np.ndarray
    predictions: Mapping[str, np.ndarray]
    challenger: str
    champion: str | None
    metric: str
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0


# A pluggable gate (e.g. calibration, per-slice non-inferiority): returns one Gate or several (one per
# slice); the challenger is promoted only if every gated Gate passes.
GateCheck = Callable[[GateContext], "Gate | Sequence[Gate]"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    return value


@dataclass(frozen=True)
class Decision:
    """Outcome of a champion/challenger comparison, ready to log, persist and show."""

    promote: bool
    challenger: str | None
    champion: str | None
    reason: str
    gates: tuple[Gate, ...]
    bootstrap: BootstrapResult | None
    delong: DelongResult | None = None  # second opinion on the primary ROC AUC difference, never gated
    #: how the challenger was chosen: "selection" (by scores from data the gates do not see, e.g. the
    #: candidates' out-of-time CV ROC AUC) or "holdout" (best on the same holdout that then gates it)
    selected_by: str = "holdout"
    selection_note: str = ""

    @property
    def deciding_gate(self) -> str:
        """Name of the gate the decision turned on: the first failed gated gate, else the primary gate."""
        failed = [gate for gate in self.gates if gate.gated and not gate.passed]
        return (failed[0] if failed else self.gates[0]).name

    def to_dict(self) -> dict:
        """Plain JSON types only (tuples -> lists, NaN/inf -> None) for metadata and registries."""
        return _json_safe({**asdict(self), "deciding_gate": self.deciding_gate})


def choose_best(candidate_metrics: Mapping[str, Mapping[str, float]], metric: str = PRIMARY_METRIC) -> str:
    """Name of the best candidate on `metric` (highest; lowest for losses such as log_loss).

    Ties go to the first name in sorted order so reruns pick the same model. Candidates whose
    figure is NaN are skipped.
    """
    if not candidate_metrics:
        raise ValueError("no candidates to choose from")
    prefer_higher = higher_is_better(metric)
    best_name: str | None = None
    best_value = math.nan
    for name in sorted(candidate_metrics):
        if metric not in candidate_metrics[name]:
            raise ValueError(f"candidate {name!r} has no {metric!r} figure")
        value = float(candidate_metrics[name][metric])
        if math.isnan(value):
            continue
        improves = value > best_value if prefer_higher else value < best_value
        if best_name is None or improves:
            best_name, best_value = name, value
    if best_name is None:
        raise ValueError(f"every candidate's {metric!r} is NaN")
    return best_name


def _primary_metric_gate(bootstrap: BootstrapResult, challenger: str, min_improvement: float) -> Gate:
    # Orient the interval as a gain so "lower bound > min_improvement" works for losses too.
    if higher_is_better(bootstrap.metric):
        gain_lower, gain_upper = bootstrap.lower, bootstrap.upper
    else:
        gain_lower, gain_upper = -bootstrap.upper, -bootstrap.lower
    passed = gain_lower > min_improvement
    confidence = f"{100 * (1 - bootstrap.alpha):g}%"
    comparison = "is above" if passed else "is not above"
    detail = (
        f"the lower bound of the {confidence} paired-bootstrap interval of the {bootstrap.metric} gain of "
        f"{challenger!r} is {gain_lower:.4f} (interval [{gain_lower:.4f}, {gain_upper:.4f}], "
        f"{bootstrap.n_boot} replicates), which {comparison} min_improvement {min_improvement:.4f}"
    )
    sign = 1.0 if higher_is_better(bootstrap.metric) else -1.0
    return Gate(
        name="primary_metric_ci",
        figure=float(gain_lower),
        threshold=float(min_improvement),
        passed=bool(passed),
        detail=detail,
        gain=float(sign * bootstrap.observed_diff),
        gain_interval=(float(gain_lower), float(gain_upper)),
        gain_margin=float(min_improvement),
    )


# --------------------------------------------------------------------------------------------
# guardrail gates: non-inferiority on calibration and within slices
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailSettings:
    """Non-inferiority margins of the guardrail gates; see docs/DECISIONS.md for how they were chosen.

    A guardrail does not ask the challenger to be better, only to be not worse than the champion by more
    than the margin, judged on the bound of the paired-bootstrap interval (not the point value), so noise
    alone neither blocks a real improvement nor lets a real regression through.
    """

    calibration_margin: float = 0.002  # Brier: challenger - champion upper bound must be <= this
    slice_margin: float = 0.02  # primary metric within a slice: gain lower bound must be >= -this
    #: None: every low-cardinality text feature of the holdout (``resolve_slice_columns``); a tuple: exactly
    #: these, each required in the data
    slice_columns: tuple[str, ...] | None = None
    min_slice_rows: int = 500  # smaller slices are reported, not gated
    min_slice_positives: int = 50  # ... and so are slices with fewer rows of either class

    def __post_init__(self) -> None:
        for name in ("calibration_margin", "slice_margin"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("min_slice_rows", "min_slice_positives"):
            if int(getattr(self, name)) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)!r}")


def calibration_gate(margin: float) -> GateCheck:
    """Brier non-inferiority: the upper bound of the paired-bootstrap interval of Brier(challenger) -
    Brier(champion) must not exceed ``margin``. Brier rather than the calibration slope because it is a
    proper score (a bootstrap of the slope needs a model fit per replicate) and it is what a retention
    budget computed from the probabilities pays for."""

    def check(context: GateContext) -> tuple[Gate, ...]:
        if context.champion is None:
            return ()
        boot = paired_bootstrap_diff(
            context.y,
            context.predictions[context.challenger],
            context.predictions[context.champion],
            "brier",
            context.n_boot,
            context.alpha,
            context.seed,
        )
        passed = boot.upper <= margin
        confidence = f"{100 * (1 - boot.alpha):g}%"
        detail = (
            f"the upper bound of the {confidence} paired-bootstrap interval of Brier(challenger) - "
            f"Brier(champion) is {boot.upper:.4f} (observed {boot.observed_diff:+.4f}, interval "
            f"[{boot.lower:.4f}, {boot.upper:.4f}]), which {'is within' if passed else 'exceeds'} the "
            f"calibration margin {margin:.4f}"
        )
        # as a gain: Brier(champion) - Brier(challenger), whose lower end must be >= -margin
        return (Gate("calibration_brier", float(boot.upper), float(margin), bool(passed), detail,
                     gain=-float(boot.observed_diff), gain_interval=(-float(boot.upper), -float(boot.lower)),
                     gain_margin=-float(margin)),)

    return check


def _slice_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "(missing)"
    return str(value)


def slice_gates(
    slices: Mapping[str, Any], margin: float, min_rows: int, min_positives: int
) -> GateCheck:
    """Per-slice non-inferiority on the primary metric: in every slice (column = value) with at least
    ``min_rows`` rows and ``min_positives`` rows of each class, the lower bound of the challenger's gain
    interval must be >= -margin. Smaller slices get a Gate with gated=False: shown with their point
    figure, never blocking (their interval would be too wide to mean anything)."""
    slice_values = {str(column): np.asarray(values, dtype=object) for column, values in slices.items()}

    def check(context: GateContext) -> tuple[Gate, ...]:
        if context.champion is None:
            return ()
        gates: list[Gate] = []
        for column, raw in slice_values.items():
            if raw.shape != context.y.shape:
                raise ValueError(
                    f"slice column {column!r} has {raw.size} values but the holdout has {context.y.size} rows"
                )
            labels = np.array([_slice_label(value) for value in raw], dtype=object)
            for value in sorted(set(labels.tolist())):
                rows = labels == value
                y_slice = context.y[rows]
                n_rows, positives = int(rows.sum()), int(y_slice.sum())
                name = f"slice_{context.metric}[{column}={value}]"
                challenger = context.predictions[context.challenger][rows]
                champion = context.predictions[context.champion][rows]
                if n_rows < min_rows or min(positives, n_rows - positives) < min_positives:
                    both = 0 < positives < n_rows
                    observed = (
                        _metric_value(y_slice, challenger, context.metric)
                        - _metric_value(y_slice, champion, context.metric)
                        if both
                        else None
                    )
                    sign = 1.0 if higher_is_better(context.metric) else -1.0
                    gates.append(Gate(
                        name, None if observed is None else sign * observed, -margin, True,
                        f"too small to gate ({n_rows} rows, {positives} positives; needs {min_rows} rows and "
                        f"{min_positives} of each class): reported, not gated", gated=False,
                    ))
                    continue
                boot = paired_bootstrap_diff(
                    y_slice, challenger, champion, context.metric, context.n_boot, context.alpha, context.seed
                )
                higher = higher_is_better(context.metric)
                gain_lower = boot.lower if higher else -boot.upper
                gain_upper = boot.upper if higher else -boot.lower
                passed = gain_lower >= -margin
                detail = (
                    f"{n_rows} rows, {positives} positives: the lower bound of the {context.metric} gain in "
                    f"{column}={value} is {gain_lower:.4f} (observed {boot.observed_diff:+.4f}), which "
                    f"{'is within' if passed else 'is below'} the non-inferiority margin -{margin:.4f}"
                )
                gates.append(Gate(name, float(gain_lower), -float(margin), bool(passed), detail,
                                  gain=float(boot.observed_diff if higher else -boot.observed_diff),
                                  gain_interval=(float(gain_lower), float(gain_upper)), gain_margin=-float(margin)))
        return tuple(gates)

    return check


#: Automatic slices: a text feature with 2 to this many distinct holdout values is a segment worth guarding
#: (a region, a plan, a channel); more values (a city, a free-text field) would make slices too small to judge.
MAX_AUTO_SLICE_VALUES = 20


@dataclass(frozen=True)
class SliceChoice:
    """Which holdout columns the slice guardrail gates, and why the others are not gated."""

    columns: tuple[str, ...]  # gated
    missing: tuple[str, ...] = ()  # named by the user but not in the data: an error wherever it is found
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a slice (automatic choice)
    automatic: bool = True

    def describe(self) -> str:
        if self.missing:
            return f"slice column(s) {list(self.missing)} named in slice_columns are not in this dataset"
        how = "automatic: text features with 2-{} values".format(MAX_AUTO_SLICE_VALUES) if self.automatic else "named"
        gated = ", ".join(self.columns) or "none"
        return f"slices gated: {gated} ({how})"


def resolve_slice_columns(frame: pd.DataFrame, named: Sequence[str] | None,
                          max_values: int = MAX_AUTO_SLICE_VALUES) -> SliceChoice:
    """The slice columns of a dataset: the ones named (each must be in ``frame``), or, when none are named,
    every text feature with 2..``max_values`` distinct non-null values, so that a default fits any data.

    Why automatic rather than a fixed list: a default naming one dataset's columns (the game's platform,
    country, channel) fails on every other dataset; the columns a data scientist slices by are its
    categorical features.
    """
    from refresh_assets.core.features import KEY_COLUMNS, LABEL_COLUMN

    if named is not None:
        missing = tuple(c for c in named if c not in frame.columns)
        return SliceChoice(tuple(c for c in named if c in frame.columns), missing, {}, automatic=False)
    columns, skipped = [], {}
    for name in frame.columns:
        if name in (*KEY_COLUMNS, LABEL_COLUMN):
            continue
        column = frame[name]
        if column.dtype.kind not in "OUS" and str(column.dtype) not in ("string", "category"):
            continue
        distinct = int(column.nunique(dropna=True))
        if distinct < 2:
            skipped[name] = f"{distinct} value"
        elif distinct > max_values:
            skipped[name] = f"{distinct} values (more than {max_values})"
        else:
            columns.append(name)
    return SliceChoice(tuple(columns), (), skipped, automatic=True)


def guardrail_gates(settings: GuardrailSettings, holdout: pd.DataFrame) -> list[GateCheck]:
    """The calibration gate and the slice gates for the slice columns of the holdout.

    A named slice column the holdout lacks raises: silently dropping a guardrail would promote without the
    check the configuration asked for (the refresh's dataset checks refuse it before any training).
    """
    choice = resolve_slice_columns(holdout, settings.slice_columns)
    if choice.missing:
        raise ValueError(
            f"slice column(s) {list(choice.missing)} are not in the holdout (columns: {list(holdout.columns)}); "
            "set model_comparison's slice_columns to columns the dataset query returns, [] for none, or leave "
            "it empty for the automatic choice"
        )
    slices = {column: holdout[column].to_numpy(dtype=object) for column in choice.columns}
    return [
        calibration_gate(settings.calibration_margin),
        slice_gates(slices, settings.slice_margin, settings.min_slice_rows, settings.min_slice_positives),
    ]


def decide(
    y: Any,
    predictions: Mapping[str, Any],
    champion_name: str | None,
    min_improvement: float = 0.0,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    metric: str = PRIMARY_METRIC,
    *,
    extra_gates: Sequence[GateCheck] = (),
    selection_scores: Mapping[str, float] | None = None,
) -> Decision:
    """Pick the best challenger and decide whether it replaces the champion.

    Selection: with ``selection_scores`` (higher is better; a figure for every challenger, measured on data the
    holdout gates never see, such as each candidate's out-of-time cross-validated ROC AUC), the challenger is
    the best by those and the holdout only gates it. Without, it is the best on the holdout itself: then
    the gate judges the maximum of several noisy holdout gains, which is biased upward (the winner's curse:
    measured in docs/DECISIONS.md), so a refresh passes its candidates' CV scores.

    Promote if there is no champion, or if the lower bound of the paired bootstrap interval of
    the challenger's gain over the champion exceeds min_improvement (a point estimate alone would
    promote noise). `predictions` holds every challenger's holdout probabilities and, when there is
    a champion, the champion's under `champion_name`. `extra_gates` (e.g. :func:`guardrail_gates`:
    calibration and per-slice non-inferiority) must all pass as well, except gates marked gated=False
    (reported only); the reason names the first failed gate. DeLong's test of the ROC AUC difference is
    attached as a second opinion and never decides.
    """
    labels = _as_binary_labels(y)
    _require_both_classes(labels)
    if champion_name is not None and champion_name not in predictions:
        raise ValueError(f"champion {champion_name!r} has no predictions; got {sorted(predictions)}")
    probabilities = {
        name: _as_probabilities(values, labels.size, name=f"predictions[{name!r}]")
        for name, values in predictions.items()
    }
    challengers = sorted(name for name in probabilities if name != champion_name)
    if not challengers:
        raise ValueError("predictions holds no challenger (only the champion)")

    challenger_metrics = {
        name: {metric: _metric_value(labels, probabilities[name], metric)} for name in challengers
    }
    best, selected_by, selection_note = select_challenger(challenger_metrics, metric, selection_scores)
    best_figure = challenger_metrics[best][metric]

    bootstrap: BootstrapResult | None = None
    if champion_name is None:
        primary_gate = Gate(
            name="no_champion",
            figure=None,
            threshold=None,
            passed=True,
            detail=(
                f"there is no current champion, so the best of {len(challengers)} challenger(s) "
                f"({best!r}, {metric} {best_figure:.4f}{'; ' + selection_note if selected_by == 'selection' else ''}) "
                "is promoted"
            ),
        )
    else:
        bootstrap = paired_bootstrap_diff(
            labels, probabilities[best], probabilities[champion_name], metric, n_boot, alpha, seed
        )
        primary_gate = _primary_metric_gate(bootstrap, best, min_improvement)

    context = GateContext(
        y=labels, predictions=probabilities, challenger=best, champion=champion_name, metric=metric,
        n_boot=int(n_boot), alpha=float(alpha), seed=int(seed),
    )
    gates: list[Gate] = [primary_gate]
    for check in extra_gates:
        result = check(context)
        gates.extend([result] if isinstance(result, Gate) else result)
    failed = [gate for gate in gates if gate.gated and not gate.passed]
    promote = not failed
    deciding_gate = primary_gate if promote else failed[0]
    delong = None
    if champion_name is not None and metric == "roc_auc":
        delong = delong_test(labels, probabilities[best], probabilities[champion_name], alpha)

    outcome = "passed" if promote else "failed"
    if promote:
        versus = f" over champion {champion_name!r}" if champion_name is not None else ""
        verdict = f"Promote {best!r}{versus}"
    elif champion_name is not None:
        verdict = f"Keep champion {champion_name!r}"
    else:
        verdict = f"Do not promote {best!r}"
    reason = f"{verdict} (gate {deciding_gate.name} {outcome}): {deciding_gate.detail}."
    if selected_by == "selection" and champion_name is not None:
        reason += f" {best!r} was {selection_note}."
    return Decision(
        promote=promote,
        challenger=best,
        champion=champion_name,
        reason=reason,
        gates=tuple(gates),
        bootstrap=bootstrap,
        delong=delong,
        selected_by=selected_by,
        selection_note=selection_note,
    )


def select_challenger(challenger_metrics: Mapping[str, Mapping[str, float]], metric: str,
                      selection_scores: Mapping[str, float] | None) -> tuple[str, str, str]:
    """(name, "selection" | "holdout", note): the best challenger by ``selection_scores`` when every challenger
    has a finite one (ties to the first name, so reruns agree), else the best on the holdout ``metric``."""
    if selection_scores is not None:
        scores = {name: selection_scores.get(name) for name in challenger_metrics}
        usable = {name: float(v) for name, v in scores.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        if len(usable) == len(scores):
            best = sorted(usable, key=lambda name: (-usable[name], name))[0]
            return best, "selection", (f"chosen by its CV score {usable[best]:.4f}, on training data the holdout "
                                       f"gates never see")
        missing = sorted(name for name in scores if name not in usable)
        return (choose_best(challenger_metrics, metric), "holdout",
                f"chosen on the holdout: no selection score for {', '.join(missing)}")
    return choose_best(challenger_metrics, metric), "holdout", "chosen on the holdout"


# --------------------------------------------------------------------------------------------
# comparison table
# --------------------------------------------------------------------------------------------


def comparison_table(
    candidate_metrics: Mapping[str, Mapping[str, float]], champion_name: str | None
) -> pd.DataFrame:
    """One row per model (champion first, then challengers by name): model, role, then metrics."""
    if champion_name is not None and champion_name not in candidate_metrics:
        raise ValueError(
            f"champion {champion_name!r} is not among the candidates {sorted(candidate_metrics)}"
        )
    metric_names: list[str] = []
    for figures in candidate_metrics.values():
        metric_names.extend(name for name in figures if name not in metric_names)
    ordered = ([champion_name] if champion_name is not None else []) + sorted(
        name for name in candidate_metrics if name != champion_name
    )
    rows = [
        {
            "model": name,
            "role": "champion" if name == champion_name else "challenger",
            **{metric: candidate_metrics[name].get(metric, math.nan) for metric in metric_names},
        }
        for name in ordered
    ]
    return pd.DataFrame(rows, columns=["model", "role", *metric_names])


def _format_cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return "n/a" if math.isnan(float(value)) else f"{float(value):.4f}"
    if value is None:
        return "n/a"
    return str(value).replace("|", "\\|")


def comparison_markdown(table: pd.DataFrame, decision: Decision) -> str:
    """Markdown summary for run metadata and the HTML report: table, decision, interval, gates."""
    headers = [str(column) for column in table.columns]
    body = [[_format_cell(value) for value in row] for row in table.itertuples(index=False, name=None)]
    numeric = [pd.api.types.is_numeric_dtype(table[column]) for column in table.columns]
    widths = [max([len(header), 3, *(len(row[i]) for row in body)]) for i, header in enumerate(headers)]

    def line(cells: list[str]) -> str:
        # Pad so the raw text lines up too (it is shown verbatim in logs and the HTML <pre>).
        padded = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(cells, widths, numeric)
        ]
        return "| " + " | ".join(padded) + " |"

    rules = ["-" * (width - 1) + ":" if is_number else "-" * width for width, is_number in zip(widths, numeric)]
    separator = "| " + " | ".join(rules) + " |"
    lines = [line(headers), separator, *(line(row) for row in body), ""]

    # The reason already starts with the verdict ("Promote ..." / "Keep champion ...").
    lines.append(f"**Decision:** {decision.reason}")
    lines.append("")
    if decision.bootstrap is None:
        lines.append("**Paired bootstrap:** not run (no champion to compare against).")
    else:
        boot = decision.bootstrap
        lines.append(
            f"**Paired bootstrap** ({boot.n_boot} replicates, seed {boot.seed}): {boot.metric} "
            f"challenger - champion = {boot.observed_diff:.4f}, "
            f"{100 * (1 - boot.alpha):g}% interval [{boot.lower:.4f}, {boot.upper:.4f}]."
        )
    if decision.delong is not None:
        delong = decision.delong
        lines.append("")
        lines.append(
            f"**DeLong's test** (second opinion, not gated): ROC AUC challenger - champion = {delong.diff:.4f}, "
            f"SE {delong.std_error:.4f}, z = {delong.z:.2f}, p = {delong.p_value:.4g}, "
            f"{100 * (1 - delong.alpha):g}% interval [{delong.lower:.4f}, {delong.upper:.4f}]."
        )
    lines.append("")
    lines.append(f"**Gates** (decided by `{decision.deciding_gate}`):")
    lines.append("")
    lines.append("| gate | figure | margin / threshold | result |")
    lines.append("| --- | ---: | ---: | --- |")
    for gate in decision.gates:
        figure = "n/a" if gate.figure is None else f"{gate.figure:.4f}"
        threshold = "n/a" if gate.threshold is None else f"{gate.threshold:.4f}"
        status = ("pass" if gate.passed else "FAIL") if gate.gated else "reported, not gated"
        lines.append(f"| {_format_cell(gate.name)} | {figure} | {threshold} | {status} |")
    return "\n".join(lines) + "\n"
