"""Unit tests for refresh_assets.core.charts: every chart is a valid, small, reproducible PNG in Markdown, odd
input gives a sentence instead of an exception, and the helpers pick the right gates and columns."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refresh_assets.core import charts
from refresh_assets.core.drift import CATEGORICAL, NUMERICAL, ColumnDrift
from refresh_assets.core.evaluate import GuardrailSettings, decide, guardrail_gates

_IMAGE = re.compile(r"^!\[([^\]\n]*)\]\(data:image/png;base64,([A-Za-z0-9+/]+=*)\)$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_of(markdown: str) -> tuple[bytes, tuple[int, int]]:
    """The PNG inside a Markdown image, checked: signature, PIL can decode it, under the size cap."""
    match = _IMAGE.match(markdown)
    assert match, f"not a Markdown PNG image: {markdown[:120]!r}"
    assert match.group(1).strip(), "empty alt text"
    data = base64.b64decode(match.group(2), validate=True)
    assert data[:8] == _PNG_SIGNATURE
    assert len(data) < charts.MAX_PNG_BYTES
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes every pixel: a truncated PNG fails here
        assert image.format == "PNG"
        size = image.size
    assert b"matplotlib" not in data.lower(), "the version stamp must be dropped (reproducible bytes)"
    return data, size


def is_text(markdown: str) -> bool:
    return not markdown.startswith("![") and "nothing to draw" in markdown and "base64" not in markdown


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def holdout(n: int, seed: int, models: int = 5):
    """Labels from a latent risk; model k sees the risk through more noise as k grows (worse ranking)."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    y = (rng.random(n) < _sigmoid(2 * risk - 2)).astype(int)
    predictions = {f"model_{k}": _sigmoid(2 * (risk + (0.5 + 0.2 * k) * rng.normal(size=n)) - 2)
                   for k in range(models)}
    return y, predictions


@pytest.fixture(scope="module")
def small_holdout():
    return holdout(3000, seed=1)


# ------------------------------------------------------------------------------------------------ import cost


def test_importing_the_module_leaves_matplotlib_out():
    code = "import sys, refresh_assets.core.charts; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------ comparison


def test_comparison_chart_is_a_reproducible_png_of_the_set_size(small_holdout):
    y, predictions = small_holdout
    markdown = charts.comparison_chart(y, predictions, champion="model_0")
    data, size = png_of(markdown)
    assert size == (round(charts.WIDTH * charts.DPI), round(charts.HEIGHT * charts.DPI))
    assert charts.comparison_chart(y, predictions, champion="model_0") == markdown
    # the champion's style is part of the picture
    assert charts.comparison_chart(y, predictions, champion="model_1") != markdown


def test_comparison_chart_drops_nan_scores_and_bad_labels(small_holdout):
    y, predictions = small_holdout
    dropped = np.zeros(y.size, dtype=bool)
    dropped[::7] = True
    with_nan = {name: np.where(dropped, np.nan, p) for name, p in predictions.items()}
    bad_labels = np.where(np.arange(y.size) % 11 == 0, np.nan, y.astype(float))
    dropped |= np.isnan(bad_labels)
    expected = charts.comparison_chart(y[~dropped], {n: p[~dropped] for n, p in predictions.items()}, "model_0")
    assert charts.comparison_chart(bad_labels, with_nan, "model_0") == expected


@pytest.mark.parametrize("models", [1, 12])
def test_comparison_chart_one_model_and_many(models):
    y, predictions = holdout(1500, seed=2, models=models)
    png_of(charts.comparison_chart(y, predictions, champion="model_0"))
    png_of(charts.comparison_chart(y, predictions, champion="not_a_model"))  # drawn as if there were none


def test_comparison_chart_single_class_draws_a_note_not_an_error(small_holdout):
    _, predictions = small_holdout
    png_of(charts.comparison_chart(np.zeros(3000, dtype=int), predictions, "model_0"))
    png_of(charts.comparison_chart(np.ones(3000, dtype=int), predictions))


@pytest.mark.parametrize(
    "y, predictions",
    [
        ([], {}),
        ([0, 1, 1], {}),
        ([], {"a": []}),
        ([0, 1, 0], {"a": [np.nan, np.nan, np.nan]}),
        ([np.nan, np.nan], {"a": [0.1, 0.2]}),
        ([0, 1, 0], {"a": [0.1, 0.2]}),  # lengths differ
        (["x", None], {"a": [None, "y"]}),
    ],
)
def test_comparison_chart_with_nothing_drawable_returns_text(y, predictions):
    assert is_text(charts.comparison_chart(y, predictions, champion="a"))


def test_comparison_chart_leaves_out_a_misaligned_model(small_holdout):
    y, predictions = small_holdout
    png_of(charts.comparison_chart(y, {**predictions, "short": predictions["model_0"][:10]}, "model_0"))


def test_calibration_bins_match_sklearn_quantile_curve(small_holdout):
    from sklearn.calibration import calibration_curve

    y, predictions = small_holdout
    p = predictions["model_2"]
    observed, mean_predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    ours_predicted, ours_observed = charts.calibration_bins(y, p)
    np.testing.assert_allclose(ours_predicted, mean_predicted, rtol=1e-12)
    np.testing.assert_allclose(ours_observed, observed, rtol=1e-12)
    assert ours_predicted.size == 10


def test_downsample_keeps_the_ends_and_at_most_the_cap():
    x = np.arange(10_000, dtype=float)
    (small,) = charts._downsample(x)
    assert small.size <= charts.MAX_CURVE_POINTS
    assert (small[0], small[-1]) == (0.0, 9999.0)
    assert np.all(np.diff(small) > 0)
    (untouched,) = charts._downsample(x[:50])
    assert untouched.size == 50


# ------------------------------------------------------------------------------------------------ gates


def _segments(n: int, seed: int):
    """A holdout split into a big, a middle and a tiny segment (the tiny one is reported, not gated)."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["big", "middle", "tiny"], size=n, p=[0.6, 0.37, 0.03])
    risk = rng.normal(size=n)
    y = (rng.random(n) < _sigmoid(2 * risk - 1)).astype(int)

    def model(noise, model_seed):
        seen = risk + noise * np.random.default_rng(model_seed).normal(size=n)
        return _sigmoid((2 * seen - 1) / np.sqrt(1 + 4 * noise**2 / 3))

    return pd.DataFrame({"segment": segment}), y, model


def _real_decision(better: bool):
    frame, y, model = _segments(5000, seed=4)
    good, poor = model(0.3, 10), model(1.2, 11)
    challenger, champion = (good, poor) if better else (poor, good)
    settings = GuardrailSettings(slice_columns=("segment",), min_slice_rows=500, min_slice_positives=50)
    return decide(y, {"challenger": challenger, "champ": champion}, "champ", n_boot=200, seed=3,
                  extra_gates=guardrail_gates(settings, frame))


def test_gate_rows_from_a_real_decision_carry_intervals_oriented_as_gains():
    decision = _real_decision(better=True)
    assert decision.promote
    rows = charts.gate_rows(decision)
    names = [row["name"] for row in rows]
    assert names == ["primary_metric_ci", "calibration_brier", "slice_roc_auc[segment=big]",
                     "slice_roc_auc[segment=middle]"]  # the tiny slice is not gated: no interval, skipped
    assert all(set(row) >= {"name", "estimate", "lower", "upper", "margin", "passed"} for row in rows)
    by_name = {row["name"]: row for row in rows}
    gates = {gate.name: gate for gate in decision.gates}

    primary = by_name["primary_metric_ci"]
    boot = decision.bootstrap
    assert (primary["lower"], primary["upper"], primary["estimate"]) == (boot.lower, boot.upper, boot.observed_diff)
    assert primary["lower"] == gates["primary_metric_ci"].figure
    assert primary["lower"] > primary["margin"] == 0.0 and primary["passed"]

    calibration = by_name["calibration_brier"]  # Brier gain = champion - challenger: positive for the better model
    assert calibration["lower"] == -gates["calibration_brier"].figure
    assert 0 < calibration["lower"] <= calibration["estimate"] <= calibration["upper"] + 1e-4
    assert calibration["margin"] == -gates["calibration_brier"].threshold and calibration["passed"]

    for name in ("slice_roc_auc[segment=big]", "slice_roc_auc[segment=middle]"):
        row = by_name[name]
        assert row["lower"] == gates[name].figure <= row["estimate"] <= row["upper"]
        assert row["margin"] == -0.02 and row["passed"]

    data, size = png_of(charts.gates_chart(rows))
    assert size[0] == round(charts.WIDTH * charts.DPI)
    assert size[1] == int((0.75 + 0.3 * len(rows)) * charts.DPI)  # matplotlib truncates to whole pixels
    assert charts.gates_chart(rows) == charts.gates_chart(rows)


def test_gate_rows_of_a_kept_champion_fail_where_the_gates_failed():
    decision = _real_decision(better=False)
    assert not decision.promote
    rows = charts.gate_rows(decision)
    gates = {gate.name: gate for gate in decision.gates}
    assert rows and all(row["passed"] == gates[row["name"]].passed for row in rows)
    primary = rows[0]
    assert not primary["passed"] and primary["upper"] < primary["margin"]
    png_of(charts.gates_chart(rows))


def test_gates_without_intervals_give_text():
    y, predictions = holdout(800, seed=5, models=2)
    no_champion = decide(y, predictions, None, n_boot=50)
    assert charts.gate_rows(no_champion) == []
    assert is_text(charts.gates_chart([]))
    assert is_text(charts.gates_chart([{"name": "x", "lower": None, "upper": float("nan"), "passed": True}]))
    png_of(charts.gates_chart([{"name": "only lower", "lower": 0.1, "passed": False}]))
    png_of(charts.gates_chart([{"name": f"g{i}", "lower": -i, "upper": i, "estimate": 0, "margin": 0.5,
                                "passed": i % 2 == 0} for i in range(60)]))


# ------------------------------------------------------------------------------------------------ drift


def drift_frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference vs current: age shifts, spend's NULL share jumps 5% -> 45% (values unchanged), the rest stays."""
    rng = np.random.default_rng(seed)

    def frame(age_mean, spend_nulls, channel_p):
        spend = rng.lognormal(2, 1, rows)
        spend[rng.random(rows) < spend_nulls] = np.nan
        return pd.DataFrame({
            "age": rng.normal(age_mean, 8, rows),
            "sessions": rng.poisson(5, rows).astype(float),
            "spend": spend,
            "channel": rng.choice(["organic", "paid", "search"], rows, p=channel_p),
        })

    return frame(30, 0.05, [0.5, 0.3, 0.2]), frame(36, 0.45, [0.5, 0.3, 0.2])


VERDICTS = [
    ColumnDrift("age", NUMERICAL, "wasserstein", 0.75, 0.1, True),
    ColumnDrift("sessions", NUMERICAL, "wasserstein", 0.01, 0.1, False),
    ColumnDrift("spend", NUMERICAL, "wasserstein", 0.02, 0.1, False),  # NULLs are ignored by the distance
    ColumnDrift("channel", CATEGORICAL, "jensenshannon", 0.01, 0.1, False),
]


def test_distribution_columns_pick_shifted_values_and_jumping_nulls():
    reference, current = drift_frames(4000, seed=6)
    picked = charts.distribution_columns(VERDICTS, reference, current)
    assert [name for name, _ in picked] == ["age", "spend"]
    assert picked[0][1] == "drifted"
    assert picked[1][1] == "NULL 5% -> 45%"
    assert charts.distribution_columns(VERDICTS, reference, current, max_distributions=1) == picked[:1]
    assert charts.distribution_columns(VERDICTS, reference, reference) == [("age", "drifted")]


def test_distribution_columns_order_judged_by_severity_then_unjudged():
    reference, current = drift_frames(500, seed=7)
    verdicts = [
        ColumnDrift("sessions", NUMERICAL, "ks", 0.001, 0.05, True, judged=False),
        ColumnDrift("channel", CATEGORICAL, "jensenshannon", 0.15, 0.1, True),
        ColumnDrift("age", NUMERICAL, "ks", 1e-9, 0.05, True),  # a p-value: far below its threshold
        ColumnDrift("missing_column", NUMERICAL, "wasserstein", 3.0, 0.1, True),
    ]
    assert charts.distribution_columns(verdicts, reference, current, null_jump=1.0) == [
        ("age", "drifted"), ("channel", "drifted"), ("sessions", "drifted, not counted")]


# Importing evidently imports its UI server, whose web framework warns about its own deprecations.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar.*")
def test_distribution_columns_on_real_evidently_verdicts():
    from refresh_assets.core.drift import DriftSettings, check_drift

    reference, current = drift_frames(3000, seed=8)
    # the distance ignores spend's NULL jump (5% -> 45%); the drift check's NULL-share check flags it
    result = check_drift(reference, current, settings=DriftSettings(sample_size=5000))
    assert set(result.drifted_columns) == {"age", "spend"}
    spend = next(c for c in result.columns if c.column == "spend")
    assert not spend.distance_drifted and spend.drifted_by == ("null_share",)
    assert not charts.lower_score_means_drift(spend)  # a distance below its threshold, whatever the NULL check says
    picked = dict(charts.distribution_columns(result.columns, reference, current))
    assert picked["age"] == "drifted" and picked["spend"].startswith("drifted: NULL ")
    png_of(charts.drift_chart(result.columns, reference, current))
    # with the NULL-share check off, spend is not drifted and is drawn for its NULL jump only
    quiet = check_drift(reference, current, settings=DriftSettings(sample_size=5000, null_share_delta=0))
    assert "age" in quiet.drifted_columns and "spend" not in quiet.drifted_columns
    names = [name for name, _ in charts.distribution_columns(quiet.columns, reference, current)]
    assert names[:1] == ["age"] and "spend" in names


def test_direction_of_drift_scores():
    assert charts.lower_score_means_drift(ColumnDrift("a", NUMERICAL, "ks", 0.01, 0.05, True))
    assert not charts.lower_score_means_drift(ColumnDrift("a", NUMERICAL, "wasserstein", 0.2, 0.1, True))
    # an unknown method reads the way its own verdict says
    assert charts.lower_score_means_drift(ColumnDrift("a", NUMERICAL, "custom", 0.01, 0.05, True))
    assert charts.lower_score_means_drift(ColumnDrift("a", NUMERICAL, "custom", 0.5, 0.05, False))
    assert not charts.lower_score_means_drift(ColumnDrift("a", NUMERICAL, "custom", 0.5, 0.05, True))


def test_drift_chart_images_and_edge_cases():
    reference, current = drift_frames(4000, seed=9)
    markdown = charts.drift_chart(VERDICTS, reference, current)
    data, size = png_of(markdown)
    assert size[0] == 10 * charts.DPI
    assert charts.drift_chart(VERDICTS, reference, current) == markdown
    quiet = [ColumnDrift(c.column, c.kind, c.method, c.score, c.threshold, False) for c in VERDICTS]
    png_of(charts.drift_chart(quiet, reference, reference))  # the "no drifted column" note
    png_of(charts.drift_chart(VERDICTS, reference, current, max_distributions=0))
    odd = [ColumnDrift("age", NUMERICAL, "wasserstein", float("nan"), 0.1, False, judged=False),
           ColumnDrift("gone", NUMERICAL, "wasserstein", 0.5, 0.1, True)]
    png_of(charts.drift_chart(odd, reference.iloc[:0], current.iloc[:0]))
    all_null = pd.DataFrame({"age": [np.nan] * 10})
    png_of(charts.drift_chart(odd, all_null, all_null.assign(age=1.0)))
    assert is_text(charts.drift_chart([], reference, current))


def test_large_frames_are_sampled_before_plotting():
    positions = charts._sample_positions(1_000_000, charts.MAX_PLOT_ROWS)
    assert positions.size == charts.MAX_PLOT_ROWS and np.all(np.diff(positions) > 0)
    np.testing.assert_array_equal(positions, charts._sample_positions(1_000_000, charts.MAX_PLOT_ROWS))
    assert charts._sample_positions(10, charts.MAX_PLOT_ROWS).size == 10


# ------------------------------------------------------------------------------------------------ shadow, trend


def test_shadow_chart(small_holdout):
    _, predictions = small_holdout
    old, new = predictions["model_0"], predictions["model_1"]
    markdown = charts.shadow_chart(old, new, "champion v3", "challenger")
    _, size = png_of(markdown)
    assert size == (round(charts.WIDTH * charts.DPI), round(charts.HEIGHT * charts.DPI))
    assert charts.shadow_chart(old, new, "champion v3", "challenger") == markdown
    png_of(charts.shadow_chart(np.where(old > 0.5, np.nan, old), new, "old", "new"))
    png_of(charts.shadow_chart(old, new[:100], "old", "new"))  # not paired: histograms only
    png_of(charts.shadow_chart([0.3], [0.3], "old", "new"))
    png_of(charts.shadow_chart(old * 10 - 3, new, "raw", "probability"))  # scores outside [0, 1]
    assert is_text(charts.shadow_chart([], [], "old", "new"))
    assert is_text(charts.shadow_chart([np.nan], [None], "old", "new"))


def test_trend_chart():
    points = [(f"v{i}", 0.78 + 0.01 * np.sin(i)) for i in range(1, 9)]
    markdown = charts.trend_chart(points, "champion holdout ROC AUC", "ROC AUC")
    _, size = png_of(markdown)
    assert size == (round(6.0 * charts.DPI), round(2.4 * charts.DPI))
    assert charts.trend_chart(points, "champion holdout ROC AUC", "ROC AUC") == markdown
    png_of(charts.trend_chart([("v1", 0.8)], "t", "y"))
    png_of(charts.trend_chart([("v1", 0.8), ("v2", None), ("v3", float("nan")), ("v4", 0.81)], "t", "y"))
    png_of(charts.trend_chart([(f"2026-01-{i:02d}", float(i)) for i in range(1, 31)] * 3, "t", "y"))
    assert is_text(charts.trend_chart([], "t", "y"))
    assert is_text(charts.trend_chart([("v1", float("nan"))], "t", "y"))


def test_alt_text_cannot_break_the_markdown():
    markdown = charts.shadow_chart([0.1, 0.2], [0.2, 0.1], "old]](x", "new\n[y")
    png_of(markdown)
