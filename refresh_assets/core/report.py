"""Self-contained HTML comparison report: ROC, precision-recall and reliability curves per model.

plotly and scikit-learn are imported inside the function so the Dagster code location loads fast.
The plotly JavaScript is inlined because the machine that opens the report may be offline.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

# Curves are thinned to at most this many points per trace: enough to look smooth, small enough
# that a 50k-row holdout does not produce a multi-megabyte page on top of plotly.js.
MAX_POINTS_PER_TRACE = 500
CALIBRATION_BINS = 10


def _thin(*curves: np.ndarray, max_points: int = MAX_POINTS_PER_TRACE) -> tuple[np.ndarray, ...]:
    """Keep at most max_points evenly spaced points (always the first and the last)."""
    length = len(curves[0])
    if length <= max_points:
        return curves
    keep = np.unique(np.linspace(0, length - 1, max_points).round().astype(int))
    return tuple(curve[keep] for curve in curves)


def _comparison_figure(y: np.ndarray, predictions: Mapping[str, np.ndarray]) -> Any:
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    figure = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            "ROC curve",
            "Precision-recall curve",
            f"Calibration ({CALIBRATION_BINS} quantile bins)",
        ),
        horizontal_spacing=0.07,
    )
    palette = qualitative.Plotly
    for index, (name, probabilities) in enumerate(predictions.items()):
        color = palette[index % len(palette)]
        style = dict(legendgroup=name, line=dict(color=color), marker=dict(color=color))

        false_positive_rate, true_positive_rate, _ = roc_curve(y, probabilities)
        false_positive_rate, true_positive_rate = _thin(false_positive_rate, true_positive_rate)
        figure.add_trace(
            go.Scatter(x=false_positive_rate, y=true_positive_rate, mode="lines", name=name, **style),
            row=1,
            col=1,
        )

        precision, recall, _ = precision_recall_curve(y, probabilities)
        precision, recall = _thin(precision, recall)
        figure.add_trace(
            go.Scatter(x=recall, y=precision, mode="lines", name=name, showlegend=False, **style),
            row=1,
            col=2,
        )

        observed_rate, mean_predicted = calibration_curve(
            y, probabilities, n_bins=CALIBRATION_BINS, strategy="quantile"
        )
        figure.add_trace(
            go.Scatter(
                x=mean_predicted,
                y=observed_rate,
                mode="lines+markers",
                name=name,
                showlegend=False,
                **style,
            ),
            row=1,
            col=3,
        )

    diagonal = dict(mode="lines", line=dict(color="lightgray", dash="dash"), showlegend=False, hoverinfo="skip")
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], **diagonal), row=1, col=1)
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], **diagonal), row=1, col=3)
    label_rate = float(np.mean(y))
    figure.add_trace(go.Scatter(x=[0, 1], y=[label_rate, label_rate], **diagonal), row=1, col=2)

    figure.update_xaxes(title_text="false positive rate", range=[0, 1], row=1, col=1)
    figure.update_yaxes(title_text="true positive rate", range=[0, 1.02], row=1, col=1)
    figure.update_xaxes(title_text="recall", range=[0, 1], row=1, col=2)
    figure.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=2)
    figure.update_xaxes(title_text="mean predicted probability", range=[0, 1], row=1, col=3)
    figure.update_yaxes(title_text="observed churn rate", range=[0, 1.02], row=1, col=3)
    figure.update_layout(height=480, template="plotly_white", legend=dict(orientation="h", y=-0.2))
    return figure


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the target directory + os.replace: readers never see a half-written report."""
    handle, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temporary:
            temporary.write(text)
            temporary.flush()
            os.fsync(temporary.fileno())
        os.replace(temporary_name, path)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise


def write_comparison_html(
    path: str | os.PathLike[str],
    y: Any,
    predictions: Mapping[str, Any],
    markdown_summary: str,
    title: str,
) -> Path:
    """Write one offline-viewable HTML page comparing the models' holdout predictions.

    One trace per model in each of: ROC, precision-recall, reliability curve (10 quantile bins);
    the Markdown summary (table, decision, bootstrap interval) is shown verbatim in a <pre> block.
    """
    import plotly.io as pio

    labels = np.asarray(y, dtype=np.float64)
    if not predictions:
        raise ValueError("no predictions to plot")
    probabilities = {name: np.asarray(values, dtype=np.float64) for name, values in predictions.items()}
    for name, values in probabilities.items():
        if values.shape != labels.shape:
            raise ValueError(f"predictions[{name!r}] has shape {values.shape}, y has {labels.shape}")

    figure = _comparison_figure(labels, probabilities)
    plot_html = pio.to_html(figure, include_plotlyjs=True, full_html=False, config={"displaylogo": False})
    escaped_title = html.escape(title)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escaped_title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
pre {{ background: #f6f8fa; padding: 1rem; overflow-x: auto; font-size: 0.9rem; }}
</style>
</head>
<body>
<h1>{escaped_title}</h1>
<h2>Summary</h2>
<pre class="summary">{html.escape(markdown_summary)}</pre>
<h2>Holdout curves</h2>
{plot_html}
</body>
</html>
"""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, page)
    return target
