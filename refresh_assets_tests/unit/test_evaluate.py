"""Unit tests for refresh_assets.core.evaluate: hand-worked metrics, bootstrap and decision rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from refresh_assets.core.evaluate import (
    PRIMARY_METRIC,
    BootstrapResult,
    Decision,
    Gate,
    GateContext,
    choose_best,
    classification_metrics,
    comparison_markdown,
    comparison_table,
    decide,
    paired_bootstrap_diff,
    weighted_auc,
    weighted_average_precision,
)

# Six rows, scores strictly decreasing, labels alternating 1, 0, 1, 0, 1, 0.
Y_SIX = np.array([1, 0, 1, 0, 1, 0])
P_SIX = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _synthetic_holdout(n: int, seed: int, strengths: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels with a 30% rate and one probability vector per model; larger strength = better ranking."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    predictions = {
        name: _sigmoid(strength * (y - 0.5) + rng.normal(size=n)) for name, strength in strengths.items()
    }
    return y, predictions


# ------------------------------------------------------------------ classification_metrics


def test_metrics_on_six_hand_worked_rows():
    metrics = classification_metrics(Y_SIX, P_SIX, top_k=0.5)
    # Positives 0.9, 0.7, 0.2; negatives 0.8, 0.3, 0.1. Pairs won: 0.9 -> 3, 0.7 -> 2, 0.2 -> 1 = 6 / 9.
    assert metrics["roc_auc"] == pytest.approx(6 / 9)
    # Walking down: precision 1/1 at 0.9, 2/3 at 0.7, 3/5 at 0.2 -> AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    assert metrics["pr_auc"] == pytest.approx(34 / 45)
    # Squared errors .01 .64 .09 .09 .64 .01 -> 1.48 / 6.
    assert metrics["brier"] == pytest.approx(1.48 / 6)
    # Probability given to the true class: .9 .2 .7 .7 .2 .9 -> -(ln .9 + ln .2 + ln .7) / 3.
    assert metrics["log_loss"] == pytest.approx(-math.log(0.9 * 0.2 * 0.7) / 3)
    # top 50% = ceil(3) rows: 0.9 (pos), 0.8 (neg), 0.7 (pos) -> 2 of 3 flagged, 2 of 3 positives.
    assert metrics["precision_at_top_k"] == pytest.approx(2 / 3)
    assert metrics["recall_at_top_k"] == pytest.approx(2 / 3)
    assert (metrics["n"], metrics["positives"], metrics["label_rate"]) == (6, 3, 0.5)


def test_top_k_rounds_up_and_counts_at_least_one_row():
    # top 10% of 6 rows = ceil(0.6) = 1 row: the 0.9 positive -> precision 1, recall 1/3.
    metrics = classification_metrics(Y_SIX, P_SIX, top_k=0.1)
    assert metrics["precision_at_top_k"] == 1.0
    assert metrics["recall_at_top_k"] == pytest.approx(1 / 3)


def test_top_k_is_not_fooled_by_floating_point_product():
    # 0.07 * 100 == 7.000000000000001 in floating point; exactly 7 rows must be flagged, not 8.
    y = np.zeros(100, dtype=int)
    y[[0, 1, 2, 3, 4, 5, 6, 50]] = 1
    p = np.linspace(0.99, 0.01, 100)  # row 0 highest
    metrics = classification_metrics(y, p, top_k=0.07)
    assert metrics["precision_at_top_k"] == 1.0  # would be 7/8 with 8 rows flagged
    assert metrics["recall_at_top_k"] == pytest.approx(7 / 8)


def test_top_k_ties_are_broken_by_row_order():
    # Three rows tied at 0.5; the stable descending sort keeps their row order 0, 1, 2.
    y = np.array([0, 1, 1, 0])
    p = np.array([0.5, 0.5, 0.5, 0.1])
    # 1 row flagged -> row 0 (a negative); 2 rows -> rows 0 and 1 -> 1 hit out of 2 positives.
    assert classification_metrics(y, p, top_k=0.25)["precision_at_top_k"] == 0.0
    two_rows = classification_metrics(y, p, top_k=0.5)
    assert two_rows["precision_at_top_k"] == 0.5
    assert two_rows["recall_at_top_k"] == 0.5


def test_top_k_ties_follow_row_order_on_arrays_long_enough_for_unstable_sorts():
    # 20 rows with 3 distinct values: numpy's default (unstable) sort reorders these ties. 0.8 at rows 1, 3, ..., 19.
    # Top 25% = 5 rows = the first five 0.8 rows in row order: 1, 3, 5, 7, 9, all positive.
    p = np.tile([0.2, 0.8, 0.5, 0.8], 5)
    y = np.zeros(20, dtype=int)
    y[[1, 3, 5, 7, 9, 0]] = 1
    metrics = classification_metrics(y, p, top_k=0.25)
    assert metrics["precision_at_top_k"] == 1.0
    assert metrics["recall_at_top_k"] == pytest.approx(5 / 6)


def test_calibration_of_true_probabilities_is_near_identity():
    rng = np.random.default_rng(7)
    true_probability = _sigmoid(rng.normal(-0.5, 1.5, size=20_000))
    y = (rng.random(true_probability.size) < true_probability).astype(int)
    metrics = classification_metrics(y, true_probability)
    assert metrics["calibration_slope"] == pytest.approx(1.0, abs=0.1)
    assert metrics["calibration_intercept"] == pytest.approx(0.0, abs=0.1)

    # Squash toward 0.5 (logit halved): the recalibration must stretch them back, slope ~2.
    squashed = _sigmoid(0.5 * np.log(true_probability / (1 - true_probability)))
    squashed_metrics = classification_metrics(y, squashed)
    assert squashed_metrics["calibration_slope"] > 1.5
    # Same ranking, so the AUC is unchanged while calibration is not.
    assert squashed_metrics["roc_auc"] == pytest.approx(metrics["roc_auc"])


def test_constant_predictions_give_nan_calibration():
    metrics = classification_metrics(Y_SIX, np.full(6, 0.5))
    assert metrics["roc_auc"] == 0.5
    assert math.isnan(metrics["calibration_slope"]) and math.isnan(metrics["calibration_intercept"])


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "single class"),
        ([0, 1, 0], [0.2, 0.5], "lengths differ"),
        ([0, 1, 0], [0.2, 1.5, 0.1], r"\[0, 1\]"),
        ([0, 1, 0], [0.2, float("nan"), 0.1], "NaN"),
        ([0, 2, 1], [0.2, 0.5, 0.1], "0/1"),
    ],
)
def test_metrics_reject_bad_input(y, p, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y, p)


# ------------------------------------------------------------------ weighted ranking metrics


def test_weighted_auc_counts_ties_as_half():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.5, 0.5, 0.2, 0.8])
    # Pairs (pos, neg): (.5,.5) tie = 1/2, (.5,.2) = 1, (.8,.5) = 1, (.8,.2) = 1 -> 3.5 / 4.
    assert weighted_auc(y, p, np.ones(4)) == pytest.approx(0.875)
    # Weights 3,1,1,1: neg .5 x3, neg .2 x1, pos .5 x1, pos .8 x1.
    # pos .5: 3 tied negatives * 1/2 + 1 = 2.5; pos .8: 3 + 1 = 4 -> 6.5 / (2 * 4) = 0.8125.
    assert weighted_auc(y, p, [3, 1, 1, 1]) == pytest.approx(0.8125)


def test_weighted_auc_with_distinct_scores():
    # Y_SIX/P_SIX with weights 2,1,0,1,1,3: pos .9 (x2) beats negatives .8, .3, .1 (weights 1+1+3)
    # -> 2 * 5 = 10; pos .7 has weight 0; pos .2 (x1) beats .1 (x3) -> 3. 13 / (W_pos 3 * W_neg 5).
    assert weighted_auc(Y_SIX, P_SIX, [2, 1, 0, 1, 1, 3]) == pytest.approx(13 / 15)


def test_weighted_auc_equals_auc_of_repeated_rows():
    rng = np.random.default_rng(3)
    y = (rng.random(60) < 0.4).astype(int)
    p = np.round(rng.random(60), 1)  # rounding creates many ties
    counts = rng.integers(0, 4, size=60)
    repeated = np.repeat(np.arange(60), counts)
    assert weighted_auc(y, p, counts) == pytest.approx(roc_auc_score(y[repeated], p[repeated]), abs=1e-12)


def test_weighted_average_precision_matches_repeated_rows():
    rng = np.random.default_rng(4)
    y = (rng.random(60) < 0.4).astype(int)
    p = np.round(rng.random(60), 1)
    counts = rng.integers(0, 4, size=60)
    repeated = np.repeat(np.arange(60), counts)
    expected = average_precision_score(y[repeated], p[repeated])
    assert weighted_average_precision(y, p, counts) == pytest.approx(expected, abs=1e-12)


def test_weighted_auc_rejects_weights_that_leave_one_class():
    with pytest.raises(ValueError, match="single class"):
        weighted_auc([0, 1, 0], [0.1, 0.9, 0.3], [1, 0, 2])
    with pytest.raises(ValueError, match="non-negative"):
        weighted_auc([0, 1, 0], [0.1, 0.9, 0.3], [1, -1, 2])


# ------------------------------------------------------------------ paired bootstrap


def test_identical_predictions_give_a_zero_interval():
    y, predictions = _synthetic_holdout(500, seed=1, strengths={"model": 1.5})
    result = paired_bootstrap_diff(y, predictions["model"], predictions["model"].copy(), n_boot=200)
    assert (result.observed_diff, result.lower, result.upper) == (0.0, 0.0, 0.0)


def test_clearly_better_challenger_has_interval_above_zero():
    y, predictions = _synthetic_holdout(5_000, seed=2, strengths={"strong": 2.0, "weak": 0.5})
    result = paired_bootstrap_diff(y, predictions["strong"], predictions["weak"], n_boot=200)
    assert result.observed_diff > 0.1
    assert 0 < result.lower <= result.observed_diff <= result.upper


def test_gain_inside_the_noise_gives_interval_spanning_zero():
    # Challenger = champion plus a little extra noise: on 80 rows any gain is noise.
    rng = np.random.default_rng(5)
    y, predictions = _synthetic_holdout(80, seed=5, strengths={"champion": 1.0})
    challenger = np.clip(predictions["champion"] + rng.normal(0, 0.05, size=80), 0, 1)
    result = paired_bootstrap_diff(y, challenger, predictions["champion"], n_boot=300)
    assert abs(result.observed_diff) < 0.05
    assert result.lower < 0 < result.upper


def test_bootstrap_is_deterministic_by_seed():
    y, predictions = _synthetic_holdout(300, seed=6, strengths={"a": 1.0, "b": 1.2})
    first = paired_bootstrap_diff(y, predictions["b"], predictions["a"], n_boot=100, seed=11)
    again = paired_bootstrap_diff(y, predictions["b"], predictions["a"], n_boot=100, seed=11)
    other_seed = paired_bootstrap_diff(y, predictions["b"], predictions["a"], n_boot=100, seed=12)
    assert first == again
    assert (first.lower, first.upper) != (other_seed.lower, other_seed.upper)
    assert first == BootstrapResult("roc_auc", first.observed_diff, first.lower, first.upper, 100, 0.05, 11)


_SKLEARN_METRIC = {
    "roc_auc": roc_auc_score,
    "pr_auc": average_precision_score,
    "brier": brier_score_loss,
    "log_loss": lambda y, p: log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]),
}


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "brier", "log_loss"])
@pytest.mark.parametrize(
    ("n", "positive_rate", "decimals"), [(40, 0.4, 1), (40, 0.4, None), (8, 0.15, 1)]
)
def test_bootstrap_equals_explicit_resampling(metric, n, positive_rate, decimals):
    """The weighted/vectorised path must give the same replicates as copying resampled rows.

    The bootstrap draws each replicate as rng.integers(0, n, n) and redraws single-class
    resamples; the reference below does exactly that, row by row, with sklearn's metrics.
    Rounded scores exercise the tied-score path, unrounded ones the distinct-score path; the
    8-row case has a single positive, so a third of its resamples are single-class and redrawn.
    """
    rng = np.random.default_rng(8)
    y = (rng.random(n) < positive_rate).astype(int)
    y[0], y[1] = 1, 0
    challenger = _sigmoid(2 * y + rng.normal(size=n))
    champion = _sigmoid(y + rng.normal(size=n))
    if decimals is not None:
        challenger, champion = np.round(challenger, decimals), np.round(champion, decimals)
    n_boot, alpha, seed = 60, 0.1, 3

    score = _SKLEARN_METRIC[metric]
    reference_rng = np.random.default_rng(seed)
    reference_diffs: list[float] = []
    while len(reference_diffs) < n_boot:
        rows = reference_rng.integers(0, n, size=n)
        if y[rows].min() == y[rows].max():
            continue  # single-class resample: redrawn
        reference_diffs.append(score(y[rows], challenger[rows]) - score(y[rows], champion[rows]))
    expected_lower, expected_upper = np.quantile(reference_diffs, [alpha / 2, 1 - alpha / 2])

    result = paired_bootstrap_diff(y, challenger, champion, metric=metric, n_boot=n_boot, alpha=alpha, seed=seed)
    assert result.lower == pytest.approx(expected_lower, abs=1e-12)
    assert result.upper == pytest.approx(expected_upper, abs=1e-12)
    assert result.observed_diff == pytest.approx(score(y, challenger) - score(y, champion))


def test_bootstrap_rejects_unknown_metric_and_bad_parameters():
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap_diff(Y_SIX, P_SIX, P_SIX, metric="accuracy")
    with pytest.raises(ValueError, match="alpha"):
        paired_bootstrap_diff(Y_SIX, P_SIX, P_SIX, alpha=1.5)
    with pytest.raises(ValueError, match="lengths differ"):
        paired_bootstrap_diff(Y_SIX, P_SIX, P_SIX[:5])


# ------------------------------------------------------------------ choose_best / decide


def test_choose_best_takes_highest_score_lowest_loss_and_breaks_ties_by_name():
    metrics = {
        "zeta": {"roc_auc": 0.80, "log_loss": 0.40},
        "alpha": {"roc_auc": 0.80, "log_loss": 0.45},
        "mid": {"roc_auc": 0.70, "log_loss": 0.30},
    }
    assert choose_best(metrics) == "alpha"  # tie at 0.80 -> first in sorted order
    assert choose_best(metrics, metric="log_loss") == "mid"  # a loss: lowest wins
    with pytest.raises(ValueError, match="no 'pr_auc'"):
        choose_best(metrics, metric="pr_auc")


def test_decide_without_champion_promotes_best_challenger():
    y, predictions = _synthetic_holdout(400, seed=9, strengths={"weak": 0.5, "strong": 2.0})
    decision = decide(y, predictions, champion_name=None)
    assert decision.promote and decision.challenger == "strong" and decision.champion is None
    assert [gate.name for gate in decision.gates] == ["no_champion"]
    assert decision.bootstrap is None
    assert "no_champion" in decision.reason


def test_decide_promotes_challenger_better_beyond_min_improvement():
    y, predictions = _synthetic_holdout(3_000, seed=10, strengths={"champ": 0.5, "gbm": 2.0, "lr": 1.0})
    decision = decide(y, predictions, champion_name="champ", min_improvement=0.02, n_boot=200)
    assert decision.promote and decision.challenger == "gbm" and decision.champion == "champ"
    (gate,) = decision.gates
    assert gate.name == "primary_metric_ci" and gate.passed
    assert gate.figure == decision.bootstrap.lower > gate.threshold == 0.02
    assert "primary_metric_ci" in decision.reason


def test_decide_keeps_champion_when_gain_is_noise():
    rng = np.random.default_rng(11)
    y, predictions = _synthetic_holdout(80, seed=11, strengths={"champ": 1.0})
    predictions["challenger"] = np.clip(predictions["champ"] + rng.normal(0, 0.05, size=80), 0, 1)
    decision = decide(y, predictions, champion_name="champ", n_boot=300)
    assert not decision.promote
    assert decision.bootstrap.lower <= 0 and not decision.gates[0].passed
    assert decision.reason.startswith("Keep champion 'champ'") and "primary_metric_ci" in decision.reason


def test_decide_keeps_champion_when_min_improvement_exceeds_gain():
    y, predictions = _synthetic_holdout(3_000, seed=10, strengths={"champ": 0.5, "gbm": 2.0})
    decision = decide(y, predictions, champion_name="champ", min_improvement=0.5, n_boot=200)
    assert decision.bootstrap.lower > 0  # a real gain ...
    assert not decision.promote  # ... but not the 0.5 AUC points required
    assert decision.gates[0].threshold == 0.5


def test_decide_orients_loss_metrics_so_lower_is_better():
    y, predictions = _synthetic_holdout(3_000, seed=12, strengths={"champ": 0.5, "gbm": 2.0})
    decision = decide(y, predictions, champion_name="champ", metric="brier", n_boot=200)
    # challenger - champion brier is negative (better); the gate looks at the gain = -diff.
    assert decision.bootstrap.upper < 0
    assert decision.promote and decision.gates[0].figure == pytest.approx(-decision.bootstrap.upper)


def test_decide_runs_extra_gates_and_names_the_failing_one():
    y, predictions = _synthetic_holdout(3_000, seed=10, strengths={"champ": 0.5, "gbm": 2.0})
    seen: list[GateContext] = []

    def calibration_gate(context: GateContext) -> Gate:
        seen.append(context)
        return Gate("calibration", figure=1.6, threshold=1.2, passed=False, detail="slope 1.6 exceeds 1.2")

    decision = decide(y, predictions, "champ", n_boot=100, extra_gates=[calibration_gate])
    assert [gate.name for gate in decision.gates] == ["primary_metric_ci", "calibration"]
    assert decision.gates[0].passed and not decision.promote
    assert "calibration" in decision.reason and "slope 1.6" in decision.reason
    assert seen[0].challenger == "gbm" and seen[0].champion == "champ"


def test_decide_rejects_missing_champion_and_no_challenger():
    y, predictions = _synthetic_holdout(100, seed=13, strengths={"a": 1.0})
    with pytest.raises(ValueError, match="champion 'ghost'"):
        decide(y, predictions, champion_name="ghost")
    with pytest.raises(ValueError, match="no challenger"):
        decide(y, predictions, champion_name="a")


def test_decision_to_dict_is_strict_json():
    y, predictions = _synthetic_holdout(500, seed=14, strengths={"champ": 0.5, "gbm": 2.0})
    decision = decide(y, predictions, "champ", n_boot=50)
    decoded = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert decoded["promote"] is decision.promote
    assert decoded["gates"][0]["name"] == "primary_metric_ci"
    assert decoded["bootstrap"]["lower"] == decision.bootstrap.lower
    nan_gate = Decision(True, "a", None, "r", (Gate("g", float("nan"), None, True, "d"),), None)
    assert nan_gate.to_dict()["gates"][0]["figure"] is None


# ------------------------------------------------------------------ table / markdown


def _three_model_metrics() -> dict[str, dict]:
    y, predictions = _synthetic_holdout(600, seed=15, strengths={"champ": 0.5, "gbm": 2.0, "lr": 1.0})
    return y, predictions, {name: classification_metrics(y, p) for name, p in predictions.items()}


def test_comparison_table_puts_champion_first_with_roles():
    _, _, metrics = _three_model_metrics()
    table = comparison_table(metrics, champion_name="champ")
    assert table["model"].tolist() == ["champ", "gbm", "lr"]
    assert table["role"].tolist() == ["champion", "challenger", "challenger"]
    assert list(table.columns[:3]) == ["model", "role", PRIMARY_METRIC]
    assert table.loc[1, "roc_auc"] == metrics["gbm"]["roc_auc"]
    assert comparison_table(metrics, None)["role"].eq("challenger").all()
    with pytest.raises(ValueError, match="not among the candidates"):
        comparison_table(metrics, champion_name="ghost")


def test_comparison_markdown_lists_every_model_the_decision_and_interval():
    y, predictions, metrics = _three_model_metrics()
    decision = decide(y, predictions, "champ", n_boot=100)
    markdown = comparison_markdown(comparison_table(metrics, "champ"), decision)
    lines = markdown.splitlines()
    assert lines[0].startswith("| model") and set(lines[1]) <= set("|-: ")
    for name in ("champ", "gbm", "lr"):
        assert any(line.startswith(f"| {name} ") for line in lines)
    assert f"{metrics['gbm']['roc_auc']:.4f}" in markdown  # fixed 4 decimals
    assert "| 600 |" in markdown and "600.0000" not in markdown  # counts stay integers
    assert decision.reason in markdown
    boot = decision.bootstrap
    assert f"[{boot.lower:.4f}, {boot.upper:.4f}]" in markdown


def test_comparison_markdown_without_champion_says_bootstrap_not_run():
    y, predictions, metrics = _three_model_metrics()
    del predictions["champ"], metrics["champ"]
    decision = decide(y, predictions, None)
    markdown = comparison_markdown(comparison_table(metrics, None), decision)
    assert "not run" in markdown and "no_champion" in markdown


def test_decide_chooses_the_challenger_by_selection_scores_and_gates_it_on_the_holdout():
    y, predictions = _synthetic_holdout(3_000, seed=12, strengths={"champ": 0.5, "gbm": 2.0, "lr": 1.0})
    holdout_pick = decide(y, predictions, "champ", n_boot=200)
    assert holdout_pick.challenger == "gbm" and holdout_pick.selected_by == "holdout"
    # the CV scores prefer lr: lr is the one the gates judge, although gbm is better on this holdout
    chosen = decide(y, predictions, "champ", n_boot=200, selection_scores={"gbm": 0.61, "lr": 0.64})
    assert chosen.challenger == "lr" and chosen.selected_by == "selection"
    assert chosen.bootstrap.observed_diff == pytest.approx(
        roc_auc_score(y, predictions["lr"]) - roc_auc_score(y, predictions["champ"]))
    assert "'lr' was chosen by its CV score 0.6400" in chosen.reason
    assert json.loads(json.dumps(chosen.to_dict()))["selected_by"] == "selection"
    # ties go to the first name, so a rerun picks the same challenger
    assert decide(y, predictions, "champ", n_boot=50, selection_scores={"gbm": 0.6, "lr": 0.6}).challenger == "gbm"


def test_decide_falls_back_to_the_holdout_when_a_challenger_has_no_selection_score():
    y, predictions = _synthetic_holdout(2_000, seed=13, strengths={"champ": 0.5, "gbm": 2.0, "lr": 1.0})
    for scores in ({"lr": 0.9}, {"lr": 0.9, "gbm": float("nan")}, {"lr": 0.9, "gbm": None}):
        decision = decide(y, predictions, "champ", n_boot=100, selection_scores=scores)
        assert decision.challenger == "gbm" and decision.selected_by == "holdout"
        assert decision.selection_note == "chosen on the holdout: no selection score for gbm"
    no_champion = {name: p for name, p in predictions.items() if name != "champ"}
    first = decide(y, no_champion, None, selection_scores={"gbm": 0.6, "lr": 0.7})
    assert first.promote and first.challenger == "lr" and "chosen by its CV score 0.7000" in first.gates[0].detail
