"""Unit tests for refresh_assets.core.report: one self-contained, offline HTML comparison page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from refresh_assets.core.report import MAX_POINTS_PER_TRACE, _thin, write_comparison_html


@pytest.fixture(scope="module")
def holdout() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.3).astype(int)
    predictions = {
        "champion_v1": 1 / (1 + np.exp(-(0.5 * y + rng.normal(size=y.size)))),
        "gbm<new>": 1 / (1 + np.exp(-(2.0 * y + rng.normal(size=y.size)))),
    }
    return y, predictions


@pytest.fixture(scope="module")
def written_page(tmp_path_factory, holdout) -> tuple[str, object]:
    y, predictions = holdout
    target = tmp_path_factory.mktemp("report") / "nested" / "comparison.html"
    summary = "| model | roc_auc |\n| --- | ---: |\n| gbm<new> | 0.8500 |\n\n**Decision:** Promote 'gbm<new>'"
    returned = write_comparison_html(target, y, predictions, summary, title="Churn model comparison")
    return target.read_text(encoding="utf-8"), (target, returned)


def test_page_is_written_where_asked_without_leftover_temp_files(written_page):
    _, (target, returned) = written_page
    assert returned == target and target.is_file()
    assert [path.name for path in target.parent.iterdir()] == ["comparison.html"]


def test_page_inlines_plotly_and_loads_nothing_from_the_network(written_page):
    page, _ = written_page
    # plotly.js itself is embedded (it is several MB) ...
    assert len(page) > 1_000_000 and "plotly" in page.lower()
    assert "Plotly.newPlot" in page
    # ... and no <script src=...> points anywhere (offline machine). The inlined bundle mentions
    # "https://cdn.plot.ly/" as a config default for map topojson, which is never fetched here.
    script_sources = re.findall(r"<script[^>]*\bsrc\s*=", page, flags=re.IGNORECASE)
    assert script_sources == []
    assert 'src="https://cdn.plot.ly' not in page


def test_page_names_every_model_and_shows_the_summary_escaped(written_page):
    page, _ = written_page
    # Model names are trace names in the plot JSON, where plotly escapes "<" as \u003c.
    assert '"name":"champion_v1"' in page
    assert '"name":"gbm\\u003cnew\\u003e"' in page
    assert "<pre class=\"summary\">| model | roc_auc |" in page
    assert "| gbm&lt;new&gt; | 0.8500 |" in page
    assert "<title>Churn model comparison</title>" in page


def _plot_traces(page: str) -> list[dict]:
    match = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", page, flags=re.DOTALL)
    assert match, "no Plotly.newPlot call with inline data"
    return json.loads(match.group(1))


def test_page_has_one_trace_per_model_per_panel_each_thinned(written_page):
    page, _ = written_page
    model_traces = [trace for trace in _plot_traces(page) if trace.get("name")]
    # ROC, precision-recall and calibration: three traces per model, on the three x axes.
    for name in ("champion_v1", "gbm<new>"):
        axes = sorted(trace.get("xaxis", "x") for trace in model_traces if trace["name"] == name)
        assert axes == ["x", "x2", "x3"]
    # 2,000 distinct scores give ~2,000 PR-curve points; every trace must be thinned to <= 500.
    assert max(len(trace["x"]) for trace in model_traces) == MAX_POINTS_PER_TRACE
    calibration = [trace for trace in model_traces if trace.get("xaxis") == "x3"]
    assert all(len(trace["x"]) == 10 for trace in calibration)  # 10 quantile bins
    for title in ("ROC curve", "Precision-recall curve", "Calibration (10 quantile bins)"):
        assert title in page


def test_calibration_points_are_decile_means(written_page, holdout):
    page, _ = written_page
    y, predictions = holdout
    (gbm_calibration,) = [
        trace for trace in _plot_traces(page) if trace.get("name") == "gbm<new>" and trace.get("xaxis") == "x3"
    ]
    # 2,000 distinct scores -> quantile bins of 200 rows: x = mean score, y = churn rate per decile.
    order = np.argsort(predictions["gbm<new>"])
    deciles = np.array_split(order, 10)
    assert gbm_calibration["x"] == pytest.approx([predictions["gbm<new>"][rows].mean() for rows in deciles])
    assert gbm_calibration["y"] == pytest.approx([y[rows].mean() for rows in deciles])


def test_thin_keeps_endpoints_and_caps_points():
    x = np.arange(10_000)
    (thinned,) = _thin(x)
    assert len(thinned) <= MAX_POINTS_PER_TRACE
    assert thinned[0] == 0 and thinned[-1] == 9_999
    short = np.arange(7)
    assert _thin(short)[0] is short


def test_rewrite_replaces_the_file_atomically(tmp_path, holdout):
    y, predictions = holdout
    target = tmp_path / "report.html"
    target.write_text("old report")
    write_comparison_html(target, y[:200], {name: p[:200] for name, p in predictions.items()}, "new summary", "t")
    text = target.read_text(encoding="utf-8")
    assert "old report" not in text and "new summary" in text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html"]


def test_mismatched_prediction_length_is_rejected_and_nothing_is_written(tmp_path, holdout):
    y, predictions = holdout
    with pytest.raises(ValueError, match="shape"):
        write_comparison_html(tmp_path / "r.html", y, {"short": predictions["gbm<new>"][:10]}, "s", "t")
    assert list(tmp_path.iterdir()) == []
