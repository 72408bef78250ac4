"""Guardrail gates (calibration and per-slice non-inferiority) and DeLong's test, on constructed predictions
whose answer is known by construction or worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from refresh_assets.core.evaluate import (
    GuardrailSettings,
    comparison_markdown,
    comparison_table,
    decide,
    delong_test,
    guardrail_gates,
)

N_BOOT = 300


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _holdout(n: int, seed: int, segments: dict[str, float]) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows split into segments by share, labels drawn from a latent risk: P(y=1) = sigmoid(2 * risk - 1)."""
    rng = np.random.default_rng(seed)
    names = rng.choice(list(segments), size=n, p=list(segments.values()))
    risk = rng.normal(size=n)
    y = (rng.random(n) < _sigmoid(2 * risk - 1)).astype(int)
    return pd.DataFrame({"segment": names, "risk": risk}), y


def _model(frame: pd.DataFrame, seed: int, noise: float | dict[str, float], shift: float = 0.0) -> np.ndarray:
    """Probabilities from the latent risk seen through noise (per segment if a dict): less noise ranks
    better; ``shift`` moves every logit, i.e. spoils calibration without touching the ranking."""
    rng = np.random.default_rng(seed)
    sd = frame["segment"].map(noise).to_numpy(float) if isinstance(noise, dict) else np.full(len(frame), noise)
    seen = frame["risk"].to_numpy() + sd * rng.normal(size=len(frame))
    # shrink toward the label model so both models stay roughly calibrated when shift == 0
    return _sigmoid((2 * seen - 1) / np.sqrt(1 + 4 * sd**2 / 3) + shift)


def _settings(**overrides) -> GuardrailSettings:
    base = dict(calibration_margin=0.002, slice_margin=0.02, slice_columns=("segment",), min_slice_rows=500,
                min_slice_positives=50)
    return GuardrailSettings(**{**base, **overrides})


def _decide(frame, y, challenger, champion, settings=None):
    return decide(y, {"challenger": challenger, "champ": champion}, "champ", n_boot=N_BOOT, seed=3,
                  extra_gates=guardrail_gates(settings or _settings(), frame))


def _gate(decision, name):
    return next(gate for gate in decision.gates if gate.name == name)


# ------------------------------------------------------------------------------------------------ DeLong


def test_delong_on_a_hand_worked_example():
    # Positives then negatives. Challenger: positives 0.9, 0.4 vs negatives 0.5, 0.1 -> pairs won 1,1 / 0,1:
    # AUC 3/4, positive components [1, 1/2], negative components [1/2, 1]. Champion: positives 0.7, 0.6 vs
    # negatives 0.8, 0.1 -> AUC 1/2, positive components [1/2, 1/2], negative components [0, 1].
    # Var(diff) = (var(1, 1/2) + 0 - 0) / 2 + (var(1/2, 1) + var(0, 1) - 2 cov) / 2
    #           = 0.125 / 2 + (0.125 + 0.5 - 2 * 0.25) / 2 = 0.125  ->  z = 0.25 / sqrt(0.125) = 1 / sqrt(2).
    y = np.array([1, 1, 0, 0])
    result = delong_test(y, np.array([0.9, 0.4, 0.5, 0.1]), np.array([0.7, 0.6, 0.8, 0.1]))
    assert (result.auc_challenger, result.auc_champion) == pytest.approx((0.75, 0.5))
    assert result.diff == pytest.approx(0.25)
    assert result.std_error == pytest.approx(math.sqrt(0.125))
    assert result.z == pytest.approx(1 / math.sqrt(2))
    assert result.p_value == pytest.approx(0.47950012, abs=1e-7)  # 2 * (1 - Phi(0.70711))
    assert result.lower == pytest.approx(0.25 - 1.959964 * math.sqrt(0.125), abs=1e-5)


def _delong_by_definition(y, a, b):
    """DeLong (1988) straight from the definition: the n_pos x n_neg comparison matrix (ties count 1/2)."""
    pos, neg = y == 1, y == 0
    components = []
    for scores in (a, b):
        psi = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.vstack([components[0][0], components[1][0]]))
    s01 = np.cov(np.vstack([components[0][1], components[1][1]]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    diff = components[0][0].mean() - components[1][0].mean()
    return diff, math.sqrt(var)


def test_fast_delong_equals_the_quadratic_definition_with_ties():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    a = np.round(_sigmoid(1.5 * y + rng.normal(size=400)), 1)  # rounded: many ties within and across classes
    b = np.round(_sigmoid(1.0 * y + rng.normal(size=400)), 2)
    result = delong_test(y, a, b)
    diff, se = _delong_by_definition(y, a, b)
    assert result.diff == pytest.approx(diff, abs=1e-12)
    assert result.std_error == pytest.approx(se, rel=1e-9)
    assert result.auc_challenger == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auc_champion == pytest.approx(roc_auc_score(y, b), abs=1e-12)


def test_delong_of_identical_predictions_is_no_difference():
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.1])
    result = delong_test(y, p, p)
    assert (result.diff, result.z, result.p_value) == (0.0, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------ gates


def test_clear_improvement_with_no_regression_promotes_and_names_the_primary_gate():
    frame, y = _holdout(6000, 1, {"a": 0.5, "b": 0.5})
    decision = _decide(frame, y, _model(frame, 2, noise=0.3), _model(frame, 3, noise=1.2))
    assert decision.promote
    assert decision.deciding_gate == "primary_metric_ci"
    assert all(gate.passed for gate in decision.gates)
    assert {gate.name for gate in decision.gates} == {
        "primary_metric_ci", "calibration_brier", "slice_roc_auc[segment=a]", "slice_roc_auc[segment=b]"}
    assert decision.delong is not None and decision.delong.p_value < 1e-6 and decision.delong.diff > 0


def test_improvement_inside_the_noise_does_not_promote():
    frame, y = _holdout(3000, 4, {"a": 0.5, "b": 0.5})
    champion = _model(frame, 5, noise=1.0)
    # same model, tiny jitter: any gain is noise
    challenger = np.clip(champion + np.random.default_rng(6).normal(0, 0.003, len(y)), 0, 1)
    decision = _decide(frame, y, challenger, champion)
    assert not decision.promote
    assert decision.deciding_gate == "primary_metric_ci"
    assert decision.delong.p_value > 0.05


def test_a_slice_that_regresses_blocks_promotion():
    # Better overall (much better in the big slice a) but clearly worse in slice b.
    frame, y = _holdout(8000, 7, {"a": 0.8, "b": 0.2})
    challenger = _model(frame, 8, noise={"a": 0.2, "b": 2.5})
    champion = _model(frame, 9, noise=0.8)
    decision = _decide(frame, y, challenger, champion)
    assert _gate(decision, "primary_metric_ci").passed
    assert _gate(decision, "slice_roc_auc[segment=a]").passed
    regressed = _gate(decision, "slice_roc_auc[segment=b]")
    assert not regressed.passed and regressed.gated and regressed.figure < -0.02
    assert regressed.threshold == -0.02
    assert not decision.promote
    assert decision.deciding_gate == "slice_roc_auc[segment=b]"
    assert "slice_roc_auc[segment=b] failed" in decision.reason


def test_a_calibration_regression_beyond_the_margin_blocks_promotion():
    frame, y = _holdout(6000, 10, {"a": 0.5, "b": 0.5})
    champion = _model(frame, 11, noise=1.0)
    # Ranks better, but every probability is pushed up by 1.2 logits: Brier clearly worse.
    miscalibrated = _model(frame, 12, noise=0.6, shift=1.2)
    decision = _decide(frame, y, miscalibrated, champion)
    calibration = _gate(decision, "calibration_brier")
    assert _gate(decision, "primary_metric_ci").passed
    assert not calibration.passed and calibration.figure > 0.002 and calibration.threshold == 0.002
    assert not decision.promote and decision.deciding_gate == "calibration_brier"
    # The same challenger within a wide enough margin passes: the gate judges the bound against the margin.
    relaxed = _decide(frame, y, miscalibrated, champion, _settings(calibration_margin=calibration.figure + 0.001))
    assert _gate(relaxed, "calibration_brier").passed and relaxed.promote


def test_a_tiny_slice_is_reported_not_gated():
    frame, y = _holdout(6000, 13, {"a": 0.49, "b": 0.49, "tiny": 0.02})
    challenger = _model(frame, 14, noise={"a": 0.3, "b": 0.3, "tiny": 5.0})  # useless in the tiny slice
    champion = _model(frame, 15, noise=1.0)
    decision = _decide(frame, y, challenger, champion)
    tiny = _gate(decision, "slice_roc_auc[segment=tiny]")
    assert not tiny.gated and tiny.threshold == -0.02 and tiny.figure < -0.02  # a regression, shown
    assert "reported, not gated" in tiny.detail and "needs 500 rows" in tiny.detail
    assert decision.promote
    markdown = comparison_markdown(comparison_table({"challenger": {"roc_auc": 0.9}, "champ": {"roc_auc": 0.8}},
                                                    "champ"), decision)
    assert "| slice_roc_auc[segment=tiny] |" in markdown and "reported, not gated" in markdown
    assert "DeLong's test" in markdown and "decided by `primary_metric_ci`" in markdown


def test_a_slice_with_too_few_positives_is_reported_not_gated():
    frame, y = _holdout(4000, 16, {"a": 0.5, "b": 0.5})
    y = y.copy()
    b_rows = np.flatnonzero(frame["segment"].to_numpy() == "b")
    y[b_rows] = 0
    y[b_rows[:20]] = 1  # 2000 rows but only 20 positives
    decision = _decide(frame, y, _model(frame, 17, noise=0.3), _model(frame, 18, noise=1.0))
    assert not _gate(decision, "slice_roc_auc[segment=b]").gated
    assert _gate(decision, "slice_roc_auc[segment=a]").gated


def test_every_gate_lands_in_the_decision_record():
    frame, y = _holdout(3000, 19, {"a": 0.5, "b": 0.5})
    record = _decide(frame, y, _model(frame, 20, noise=0.3), _model(frame, 21, noise=1.0)).to_dict()
    assert record["deciding_gate"] == "primary_metric_ci"
    assert {"name", "figure", "threshold", "passed", "detail", "gated"} <= set(record["gates"][1])
    assert set(record["delong"]) >= {"diff", "std_error", "z", "p_value", "lower", "upper"}


def test_guardrails_do_nothing_without_a_champion():
    frame, y = _holdout(1000, 22, {"a": 1.0})
    decision = decide(y, {"only": _model(frame, 23, noise=0.5)}, None, n_boot=N_BOOT,
                      extra_gates=guardrail_gates(_settings(), frame))
    assert decision.promote and [gate.name for gate in decision.gates] == ["no_champion"]
    assert decision.delong is None


def test_a_configured_slice_column_missing_from_the_holdout_is_an_error():
    frame, _ = _holdout(100, 24, {"a": 1.0})
    with pytest.raises(ValueError, match=r"slice column\(s\) \['country'\] are not in the holdout"):
        guardrail_gates(_settings(slice_columns=("segment", "country")), frame)


def test_guardrail_settings_refuse_bad_margins():
    with pytest.raises(ValueError, match="calibration_margin"):
        GuardrailSettings(calibration_margin=-0.1)
    with pytest.raises(ValueError, match="min_slice_rows"):
        GuardrailSettings(min_slice_rows=1)


def test_automatic_slices_are_the_text_features_with_few_values():
    """Nothing named: text columns with 2..20 values are slices; numbers, one-valued and many-valued text are not."""
    from refresh_assets.core.evaluate import resolve_slice_columns

    frame = pd.DataFrame({"entity_id": range(60), "as_of_date": pd.Timestamp("2026-01-01"), "label": [0, 1] * 30,
                          "region": ["north", "south", "east"] * 20, "plan": "basic",
                          "city": [f"c{i}" for i in range(60)], "spend": np.arange(60.0)})
    choice = resolve_slice_columns(frame, None)
    assert choice.columns == ("region",) and choice.automatic and not choice.missing
    assert set(choice.skipped) == {"plan", "city"}
    named = resolve_slice_columns(frame, ["region", "platform"])
    assert named.columns == ("region",) and named.missing == ("platform",)
    with pytest.raises(ValueError, match=r"\['platform'\] are not in the holdout"):
        guardrail_gates(_settings(slice_columns=("platform",)), frame)
