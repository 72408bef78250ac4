"""Small static PNG charts as Markdown images (``![alt](data:image/png;base64,...)``) for Dagster metadata.

Why PNG data URIs: the Dagster UI renders Markdown metadata with inline images, so a picture needs no file
store, no server and no JavaScript bundle, and it stays with the materialization it describes.

Why matplotlib is imported inside the functions: importing it costs a few hundred milliseconds and the
code location must load fast (a test checks that importing this module leaves it out of ``sys.modules``).
Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas, never pyplot: nothing is registered
globally, so nothing leaks between runs or races between threads, and a dropped figure is simply freed.

Every function returns text rather than raising on odd input (no rows, one class, NaN scores): a chart
is an extra on a materialization and must never fail the step that asks for it.
"""

from __future__ import annotations

import base64
import io
import math
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # only for annotations: importing evaluate/drift is cheap, but not needed at load time
    from refresh_assets.core.drift import ColumnDrift
    from refresh_assets.core.evaluate import Decision

#: Default figure size (inches) and resolution: ~770 x 260 px, legible in the UI's metadata panel.
WIDTH, HEIGHT, DPI = 9.0, 3.0, 85
#: Hard cap of one PNG; a chart over it is re-rendered at a lower resolution.
MAX_PNG_BYTES = 150 * 1024
#: Points per drawn curve: more adds bytes and render time, not visible detail at this size.
MAX_CURVE_POINTS = 300
#: Rows per frame looked at by the drift chart's distributions (a uniform seeded sample).
MAX_PLOT_ROWS = 20_000
#: Points in the shadow scatter (a uniform seeded sample).
MAX_SCATTER_POINTS = 5_000
CALIBRATION_BINS = 10
#: The drift chart also shows a column whose NULL share moved by at least this much: Evidently's distances
#: ignore NULLs, and the drift check's own NULL-share check only flags a move of DriftSettings.null_share_delta
#: (0.10), so a smaller jump is not flagged drifted, yet it is worth a look.
NULL_SHARE_JUMP = 0.05
_SEED = 0

#: Evidently stat tests whose score is a p-value: drift when the score is BELOW the threshold
#: (evidently/legacy/calculations/stattests/*.py). The others (wasserstein, jensenshannon, psi, kl_div,
#: hellinger, ed) are distances: drift when the score is at or above it.
P_VALUE_METHODS = frozenset({
    "anderson", "chisquare", "cramer_von_mises", "es", "fisher_exact", "g_test", "ks", "mannw",
    "empirical_mmd", "t_test", "TVD", "z",
})
DISTANCE_METHODS = frozenset({"wasserstein", "jensenshannon", "psi", "kl_div", "hellinger", "ed"})

_CHAMPION_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.6, "zorder": 5}
_PASS, _FAIL, _GREY, _BLUE = "#2e7d32", "#c62828", "#9e9e9e", "#1f77b4"
_REFERENCE_COLOR, _CURRENT_COLOR = "#1f77b4", "#ff7f0e"


# ---------------------------------------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------------------------------------


def _alt(text: str) -> str:
    """Alt text safe inside ``![...]``."""
    return re.sub(r"[\[\]\n\r]", " ", str(text)).strip()


def nothing_to_draw(what: str, why: str) -> str:
    """The Markdown line returned instead of an image: says which chart and why, never an empty image."""
    return f"_{_alt(what)}: nothing to draw ({why})._"


def _figure(width: float = WIDTH, height: float = HEIGHT):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    # Software=None drops the version stamp, the only varying chunk: the same input gives the same bytes.
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _markdown(figure, alt: str) -> str:
    """Render to PNG (lower resolution if over MAX_PNG_BYTES) and wrap as a Markdown image."""
    try:
        dpi = DPI
        data = _png(figure, dpi)
        while len(data) > MAX_PNG_BYTES and dpi > 30:
            dpi = int(dpi * 0.75)
            data = _png(figure, dpi)
    finally:
        figure.clear()  # the Figure is not registered anywhere; clearing frees its artists at once
    return f"![{_alt(alt)}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def _floats(values: Any) -> np.ndarray:
    """1-D float array; anything not a number (None, pd.NA, text) becomes NaN instead of raising."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        series = pd.Series(np.asarray(values, dtype=object).ravel())
        array = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return array.ravel()


def _downsample(*arrays: np.ndarray, points: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, ...]:
    """Evenly spaced positions of the arrays (first and last kept): a curve keeps its shape, not its bytes."""
    size = len(arrays[0])
    if size <= points:
        return arrays
    keep = np.unique(np.linspace(0, size - 1, points).round().astype(np.int64))
    return tuple(array[keep] for array in arrays)


def _sample_positions(size: int, limit: int, seed: int = _SEED) -> np.ndarray:
    """Sorted positions of a seeded uniform sample of ``limit`` out of ``size`` (all when fewer)."""
    if size <= limit:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, size=limit, replace=False))


def _note(axes, text: str) -> None:
    """Replace a panel's plot by a sentence (why there is nothing to show)."""
    axes.set_xticks([])
    axes.set_yticks([])
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="#555555", wrap=True,
              transform=axes.transAxes)


def _style(axes, title: str | None = None) -> None:
    axes.tick_params(labelsize=7)
    axes.grid(True, linewidth=0.4, alpha=0.5)
    if title:
        axes.set_title(title, fontsize=9)


def _model_styles(names: Sequence[str], champion: str | None) -> dict[str, dict[str, Any]]:
    """Champion black dashed on top; challengers tab10 colours, a second line style past ten models."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    styles: dict[str, dict[str, Any]] = {}
    challengers = [name for name in names if name != champion]
    for position, name in enumerate(challengers):
        styles[name] = {"color": palette[position % 10], "linestyle": "-" if position < 10 else ":",
                        "linewidth": 1.1, "zorder": 3}
    if champion in names:
        styles[champion] = dict(_CHAMPION_STYLE)
    return styles


# ---------------------------------------------------------------------------------------------------------
# model comparison: ROC, precision-recall, calibration
# ---------------------------------------------------------------------------------------------------------


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) per quantile bin of ``p``: sklearn's calibration_curve(strategy="quantile").

    Quantile bins rather than fixed ones because churn scores crowd near 0: fixed bins would leave most bins
    empty and one bin holding most rows. Tied edges merge bins, as in sklearn.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return np.empty(0), np.empty(0)
    edges = np.percentile(p, np.linspace(0, 100, bins + 1))
    ids = np.searchsorted(edges[1:-1], p, side="right")
    counts = np.bincount(ids, minlength=len(edges))
    sums_p = np.bincount(ids, weights=p, minlength=len(edges))
    sums_y = np.bincount(ids, weights=y, minlength=len(edges))
    filled = counts > 0
    return sums_p[filled] / counts[filled], sums_y[filled] / counts[filled]


def _holdout_scores(y: Any, predictions: Mapping[str, Any]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Per model, the (labels, scores) rows where both are usable; models that cannot be drawn, with why."""
    labels = _floats(y)
    usable_label = (labels == 0) | (labels == 1)
    drawn: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: list[str] = []
    for name in sorted(predictions, key=str):
        scores = _floats(predictions[name])
        if scores.size != labels.size:
            skipped.append(f"{name}: {scores.size} scores for {labels.size} labels")
            continue
        keep = usable_label & np.isfinite(scores)
        if not keep.any():
            skipped.append(f"{name}: no finite score")
            continue
        drawn[str(name)] = (labels[keep], scores[keep])
    return drawn, skipped


def comparison_chart(y: Any, predictions: Mapping[str, Any], champion: str | None = None) -> str:
    """ROC, precision-recall and calibration of every model on the holdout, one line per model.

    The champion (if among ``predictions``) is black dashed, so "is the challenger above it?" is one glance.
    Rows with a NaN score or a label other than 0/1 are dropped per model; a model whose scores do not line
    up with ``y`` is left out and named under the chart.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    what = "model comparison chart"
    if not predictions:
        return nothing_to_draw(what, "no model predictions")
    drawn, skipped = _holdout_scores(y, predictions)
    if not drawn:
        return nothing_to_draw(what, "; ".join(skipped) or "no rows with a 0/1 label and a score")
    champion = str(champion) if champion is not None and str(champion) in drawn else None
    order = ([champion] if champion else []) + [name for name in drawn if name != champion]
    styles = _model_styles(order, champion)

    figure = _figure()
    roc_axes, pr_axes, calibration_axes = figure.subplots(1, 3)
    for axes, title in ((roc_axes, "ROC"), (pr_axes, "precision-recall"), (calibration_axes, "calibration")):
        _style(axes, title)
    role = {champion: " [champion]"} if champion else {}
    both_classes = []
    for name in order:
        labels, scores = drawn[name]
        positives = int(labels.sum())
        if 0 < positives < labels.size:
            both_classes.append(name)
            fpr, tpr, _ = roc_curve(labels, scores)
            fpr, tpr = _downsample(fpr, tpr)
            auc, ap = roc_auc_score(labels, scores), average_precision_score(labels, scores)
            # one legend for both panels (same colours): a second one would cover the PR curves
            roc_axes.plot(fpr, tpr, label=f"{name}{role.get(name, '')} AUC {auc:.3f} AP {ap:.3f}", **styles[name])
            precision, recall, _ = precision_recall_curve(labels, scores)
            recall, precision = _downsample(recall, precision)
            pr_axes.plot(recall, precision, **styles[name])
        mean_predicted, observed = calibration_bins(labels, scores)
        calibration_axes.plot(mean_predicted, observed, marker="o", markersize=2.5, **styles[name])

    if both_classes:
        roc_axes.plot([0, 1], [0, 1], color=_GREY, linestyle=":", linewidth=0.8)
        roc_axes.set(xlim=(0, 1), ylim=(0, 1.01))
        roc_axes.set_xlabel("false positive rate", fontsize=7)
        roc_axes.set_ylabel("true positive rate", fontsize=7)
        roc_axes.legend(fontsize=5.5 if len(both_classes) > 6 else 6, loc="lower right", framealpha=0.8)
        labels = drawn[both_classes[0]][0]
        prevalence = float(labels.mean())
        pr_axes.axhline(prevalence, color=_GREY, linestyle=":", linewidth=0.8)
        pr_axes.set(xlim=(0, 1), ylim=(0, 1.01))
        pr_axes.set_xlabel("recall", fontsize=7)
        pr_axes.set_ylabel("precision", fontsize=7)
    else:
        labels = drawn[order[0]][0]
        only = "1" if labels.size and labels[0] == 1 else "0"
        for axes in (roc_axes, pr_axes):
            _note(axes, f"single class in y (all {only}, n={labels.size:,}):\nno curve to draw")

    top = max(max(float(scores.max()), float(labels.mean())) for labels, scores in drawn.values())
    top = min(1.0, max(0.05, top * 1.05))
    calibration_axes.plot([0, top], [0, top], color=_GREY, linestyle=":", linewidth=0.8)
    calibration_axes.set(xlim=(0, top), ylim=(0, max(top, 0.05)))
    calibration_axes.set_xlabel(f"mean predicted ({CALIBRATION_BINS} quantile bins)", fontsize=7)
    calibration_axes.set_ylabel("observed rate", fontsize=7)

    reference = drawn[order[0]][0]
    caption = f"holdout: {reference.size:,} rows, {int(reference.sum()):,} positives"
    if skipped:
        caption += " | not drawn: " + "; ".join(skipped)
    figure.suptitle(caption, fontsize=8)
    # Fixed margins, not the constrained layout of the other charts: the axes here always span 0-1 (or 0-top)
    # with the same labels, so measuring every tick label's extent (0.19 of the 0.50 s render) finds the
    # same margins each time.
    figure.subplots_adjust(left=0.055, right=0.99, bottom=0.15, top=0.83, wspace=0.27)
    return _markdown(figure, f"ROC, precision-recall and calibration of {len(order)} model(s)")


# ---------------------------------------------------------------------------------------------------------
# promotion gates
# ---------------------------------------------------------------------------------------------------------



def gate_rows(decision: "Decision") -> list[dict[str, Any]]:
    """The gates of a decision that have an interval, as rows for :func:`gates_chart`.

    Every row is the challenger's GAIN over the champion (``evaluate.Gate.gain*``: higher is better whatever the
    metric), passing when its lower end clears ``margin``: the primary metric's gain against min_improvement,
    Brier(champion) - Brier(challenger) against -calibration margin, each slice's gain against -slice margin.
    Gates with no interval (no champion, slices too small to gate) are skipped."""
    rows: list[dict[str, Any]] = []
    for gate in decision.gates:
        if not gate.gated or gate.gain_interval is None or gate.gain_margin is None:
            continue
        lower, upper = sorted(float(v) for v in gate.gain_interval)
        rows.append({"name": gate.name, "estimate": gate.gain, "lower": lower, "upper": upper,
                     "margin": float(gate.gain_margin), "passed": bool(gate.passed)})
    return rows


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def gates_chart(gates: Sequence[Mapping[str, Any]], max_rows: int = 40) -> str:
    """Each gate a row: its interval [lower, upper] and estimate (dot) against its margin (black tick).

    Green when passed, red when failed. Rows come from :func:`gate_rows` (gain orientation: an interval
    wholly right of its tick passes). ``upper`` None draws a one-sided interval (dotted to the right).
    """
    what = "promotion gates chart"
    rows = []
    for gate in gates:
        lower, upper, estimate, margin = (_finite(gate.get(key)) for key in ("lower", "upper", "estimate", "margin"))
        if lower is None and upper is None:
            continue
        rows.append((str(gate.get("name", "?")), lower, upper, estimate, margin, bool(gate.get("passed"))))
    if not rows:
        return nothing_to_draw(what, "no gate with an interval")
    hidden = max(0, len(rows) - max_rows)
    rows = rows[:max_rows]

    values = [v for row in rows for v in row[1:5] if v is not None]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or max(abs(high), 1e-3) * 0.5
    left_limit, right_limit = low - pad, high + pad

    height = min(12.0, 0.75 + 0.3 * len(rows))
    bottom, top = 0.5 / height, 1 - 0.12 / height
    figure = _figure(WIDTH, height)
    axes = figure.add_axes((0.25, bottom, 0.41, top - bottom))
    _style(axes)
    for index, (name, lower, upper, estimate, margin, passed) in enumerate(rows):
        level = len(rows) - 1 - index
        color = _PASS if passed else _FAIL
        if lower is not None and upper is not None:
            axes.plot([lower, upper], [level, level], color=color, linewidth=2.5, solid_capstyle="butt")
        else:
            known = lower if lower is not None else upper
            far = right_limit if lower is not None else left_limit
            axes.plot([known, far], [level, level], color=color, linewidth=2.0, linestyle=":")
            axes.plot([known], [level], marker="|", markersize=10, color=color)
        if estimate is not None:
            axes.plot([estimate], [level], marker="o", markersize=4, color=color, zorder=4)
        if margin is not None:
            axes.plot([margin], [level], marker="|", markersize=14, markeredgewidth=2, color="black", zorder=5)

        def fmt(value: float | None) -> str:
            return "  ...  " if value is None else f"{value:+.4f}"

        text = f"{'pass' if passed else 'FAIL'} {fmt(estimate)} [{fmt(lower)}, {fmt(upper)}] vs {fmt(margin)}"
        axes.annotate(text, xy=(1.02, level), xycoords=("axes fraction", "data"), fontsize=7, va="center",
                      color=color, family="monospace")
    axes.set_yticks(range(len(rows)), [row[0] for row in reversed(rows)], fontsize=7)
    axes.set_ylim(-0.7, len(rows) - 0.3)
    axes.set_xlim(left_limit, right_limit)
    axes.set_xlabel("challenger gain over champion (higher is better): dot estimate, bar interval, "
                    "| margin its lower bound must clear" + (f"; {hidden} more gate(s) not drawn" if hidden else ""),
                    fontsize=7, loc="left")
    return _markdown(figure, f"{len(rows)} promotion gate(s): interval against margin")


# ---------------------------------------------------------------------------------------------------------
# feature drift
# ---------------------------------------------------------------------------------------------------------


def lower_score_means_drift(column: "ColumnDrift") -> bool:
    """True for p-value methods (drift when score < threshold), False for distances (score >= threshold).

    Known Evidently names decide; for any other method the column's own verdict tells which way it reads.
    """
    if column.method in P_VALUE_METHODS:
        return True
    if column.method in DISTANCE_METHODS:
        return False
    score, threshold = _finite(column.score), _finite(column.threshold)
    if score is None or threshold is None or score == threshold:
        return False
    # the distance's own verdict: ``drifted`` also counts the NULL-share and top-value checks
    return bool(getattr(column, "distance_drifted", column.drifted)) == (score < threshold)


def _severity(column: "ColumnDrift") -> float:
    """How far past its threshold a column is (> 1 when drifted), in whichever direction its method reads; a
    share check that fired counts as its change over its minimum change."""
    fired = [abs(check.change) / check.delta for check in _fired_checks(column) if check.delta > 0]
    score, threshold = _finite(column.score), _finite(column.threshold)
    if score is None or threshold is None:
        return max(fired, default=0.0)
    if lower_score_means_drift(column):
        distance = threshold / max(score, 1e-300)
    else:
        distance = score / threshold if threshold > 0 else score
    return max([distance, *fired])


def _fired_checks(column: "ColumnDrift") -> list:
    """The share checks (NULL share, top value share) that flagged the column."""
    return [check for check in getattr(column, "checks", ()) if check.drifted and check.judged]


def null_share(series: pd.Series) -> float:
    """Share of NULLs (and, for numbers, of +-inf, which Evidently drops too)."""
    if len(series) == 0:
        return 0.0
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return float(np.mean(~np.isfinite(values)))
    return float(series.isna().mean())


def distribution_columns(
    columns: Sequence["ColumnDrift"],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    max_distributions: int = 4,
    null_jump: float = NULL_SHARE_JUMP,
) -> list[tuple[str, str]]:
    """Which columns the drift chart draws, each with why: (column, reason), most telling first.

    Drifted judged columns (furthest past their threshold first; a column flagged by a share check says which,
    e.g. "drifted: NULL 2.0% -> 60.0%"), then drifted columns with too few values to be counted, then columns
    whose NULL share moved by >= ``null_jump``: Evidently ignores NULLs and the NULL-share check only flags
    bigger moves, yet a feed that starts losing values is exactly what to look at.
    """
    present = [c for c in columns if c.column in reference.columns and c.column in current.columns]
    chosen: list[tuple[str, str]] = []
    for judged in (True, False):
        drifted = [c for c in present if c.drifted and bool(c.judged) == judged]
        for column in sorted(drifted, key=_severity, reverse=True):
            fired = "; ".join(check.describe() for check in _fired_checks(column))
            reason = "drifted" if judged else "drifted, not counted"
            chosen.append((column.column, f"{reason}: {fired}" if fired else reason))
    taken = {name for name, _ in chosen}
    jumps = []
    for column in present:
        if column.column in taken:
            continue
        before, after = null_share(reference[column.column]), null_share(current[column.column])
        if abs(after - before) >= null_jump:
            jumps.append((abs(after - before), column.column, f"NULL {before:.0%} -> {after:.0%}"))
    chosen.extend((name, reason) for _, name, reason in sorted(jumps, key=lambda item: (-item[0], item[1])))
    return chosen[: max(0, int(max_distributions))]


def _sampled(frame: pd.DataFrame, names: Sequence[str], seed: int) -> pd.DataFrame:
    return frame[list(names)].take(_sample_positions(len(frame), MAX_PLOT_ROWS, seed))


def _draw_numeric(axes, reference: pd.Series, current: pd.Series) -> None:
    ref = reference.to_numpy(dtype=np.float64, na_value=np.nan)
    cur = current.to_numpy(dtype=np.float64, na_value=np.nan)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    both = np.concatenate([ref, cur])
    if both.size == 0:
        _note(axes, "no non-null value")
        return
    low, high = np.percentile(both, [0.5, 99.5])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 31)
    for values, color, name in ((ref, _REFERENCE_COLOR, "reference"), (cur, _CURRENT_COLOR, "current")):
        if values.size:
            weights = np.full(values.size, 1.0 / values.size)
            # values outside the central 99% are left out (not piled into the edge bins): shares stay honest
            axes.hist(values, bins=bins, weights=weights, histtype="step", color=color, linewidth=1.2, label=name)
    axes.set_ylabel("share (central 99%)", fontsize=6)


def _draw_categories(axes, reference: pd.Series, current: pd.Series, top: int = 8) -> None:
    ref = reference.dropna().astype(str)
    cur = current.dropna().astype(str)
    if ref.empty and cur.empty:
        _note(axes, "no non-null value")
        return
    ref_share = ref.value_counts(normalize=True) if len(ref) else pd.Series(dtype=float)
    cur_share = cur.value_counts(normalize=True) if len(cur) else pd.Series(dtype=float)
    combined = ref_share.add(cur_share, fill_value=0.0)
    # sort by combined share, then name: ties must not depend on hash order (same input, same bytes)
    ranked = sorted(combined.items(), key=lambda item: (-item[1], item[0]))
    names = [name for name, _ in ranked[:top]]
    ref_values = [float(ref_share.get(name, 0.0)) for name in names]
    cur_values = [float(cur_share.get(name, 0.0)) for name in names]
    if len(ranked) > top:
        names.append("(other)")
        ref_values.append(max(0.0, 1.0 - sum(ref_values)) if len(ref) else 0.0)
        cur_values.append(max(0.0, 1.0 - sum(cur_values)) if len(cur) else 0.0)
    positions = np.arange(len(names))
    axes.bar(positions - 0.2, ref_values, width=0.4, color=_REFERENCE_COLOR, label="reference")
    axes.bar(positions + 0.2, cur_values, width=0.4, color=_CURRENT_COLOR, label="current")
    axes.set_xticks(positions, [name if len(name) <= 12 else name[:11] + "~" for name in names], rotation=30,
                    ha="right", fontsize=6)
    axes.set_ylabel("share", fontsize=6)


def drift_chart(
    columns: Sequence["ColumnDrift"],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    max_distributions: int = 4,
) -> str:
    """Left: every column's drift score against its threshold. Right: reference vs current distributions of
    the columns :func:`distribution_columns` picks (drifted first), or a note when there is none.

    Bars: red drifted, blue not, grey when the column was not judged (too few values, not counted). Frames
    are sampled to MAX_PLOT_ROWS rows before plotting, so a 1M-row partition draws as fast as a small one.
    """
    from refresh_assets.core.drift import CATEGORICAL

    what = "drift chart"
    if not columns:
        return nothing_to_draw(what, "no column was checked")
    shown = list(columns)[:40]
    picked = distribution_columns(shown, reference, current, max_distributions)
    kinds = {column.column: column.kind for column in shown}

    height = max(3.2, min(9.0, 0.9 + 0.22 * len(shown)))
    figure = _figure(10.0, height)
    grid = figure.add_gridspec(2, 3, width_ratios=(1.5, 1, 1))
    bars = figure.add_subplot(grid[:, 0])
    _style(bars)
    directions = set()
    for index, column in enumerate(shown):
        level = len(shown) - 1 - index
        lower_drifts = lower_score_means_drift(column)
        directions.add(lower_drifts)
        color = _GREY if not column.judged else (_FAIL if column.drifted else _BLUE)
        score, threshold = _finite(column.score), _finite(column.threshold)
        if score is not None:
            bars.barh(level, score, height=0.6, color=color, alpha=0.85 if column.judged else 0.5)
        else:
            bars.text(0, level, " n/a", va="center", fontsize=6, color=_GREY)
        if threshold is not None:
            bars.plot([threshold], [level], marker="|", markersize=9, markeredgewidth=1.8, color="black")
    bars.set_yticks(range(len(shown)), [
        f"{c.column} ({c.method}{', p-value' if lower_score_means_drift(c) else ''}"
        f"{''.join(' + ' + check.method for check in _fired_checks(c))})" for c in reversed(shown)
    ], fontsize=6)
    bars.set_ylim(-0.7, len(shown) - 0.3)
    if directions == {True}:
        rule = "p-value: drift when BELOW threshold |"
    elif directions == {False}:
        rule = "distance: drift when >= threshold |"
    else:
        rule = "distances drift when >= threshold |, p-values when below"
    bars.set_xlabel(f"score ({rule})", fontsize=7)
    judged = [c for c in shown if c.judged]
    bars.set_title(f"{sum(c.drifted for c in judged)} of {len(judged)} judged column(s) drifted"
                   + (f", {len(shown) - len(judged)} grey: not counted" if len(judged) < len(shown) else ""),
                   fontsize=8)

    if not picked:
        note = figure.add_subplot(grid[:, 1:])
        _note(note, "no drifted column")
    else:
        if len(picked) == 1:
            slots = [grid[:, 1:]]
        elif len(picked) == 2:
            slots = [grid[:, 1], grid[:, 2]]
        else:
            slots = [grid[0, 1], grid[0, 2], grid[1, 1], grid[1, 2]]
        names = [name for name, _ in picked]
        reference_sample = _sampled(reference, names, _SEED)
        current_sample = _sampled(current, names, _SEED + 1)
        for slot, (name, reason) in zip(slots, picked):
            axes = figure.add_subplot(slot)
            _style(axes)
            ref, cur = reference_sample[name], current_sample[name]
            distinct = pd.concat([ref, cur], ignore_index=True).nunique(dropna=True)
            if kinds.get(name) == CATEGORICAL or distinct <= 10:
                _draw_categories(axes, ref, cur)
            else:
                _draw_numeric(axes, ref, cur)
            axes.set_title(f"{name}: {reason}", fontsize=7)
            axes.tick_params(labelsize=6)
        figure.axes[1].legend(fontsize=6, loc="best")
    figure.set_layout_engine("constrained")
    return _markdown(figure, f"drift of {len(shown)} column(s), {len(picked)} distribution(s)")


# ---------------------------------------------------------------------------------------------------------
# shadow scoring and trends
# ---------------------------------------------------------------------------------------------------------


def shadow_chart(old_scores: Any, new_scores: Any, old_label: str, new_label: str) -> str:
    """Old vs new score of the same rows (sampled scatter, diagonal = unchanged) and both score histograms.

    Scores of different lengths are not paired: only the histograms are drawn then, with a note.
    """
    what = "shadow scoring chart"
    old, new = _floats(old_scores), _floats(new_scores)
    old_finite, new_finite = old[np.isfinite(old)], new[np.isfinite(new)]
    if old_finite.size == 0 and new_finite.size == 0:
        return nothing_to_draw(what, "no finite score on either side")

    figure = _figure()
    scatter, histograms = figure.subplots(1, 2)
    _style(scatter, f"{new_label} vs {old_label} (same rows)")
    _style(histograms, "score distributions")
    both = np.concatenate([old_finite, new_finite])
    low, high = float(both.min()), float(both.max())
    if 0.0 <= low and high <= 1.0:
        low, high = 0.0, 1.0
    elif high <= low:
        low, high = low - 0.5, high + 0.5

    paired = np.isfinite(old) & np.isfinite(new) if old.size == new.size else None
    if paired is None:
        _note(scatter, f"not paired: {old.size:,} {old_label} scores vs {new.size:,} {new_label} scores")
    elif not paired.any():
        _note(scatter, "no row with both scores finite")
    else:
        x, y = old[paired], new[paired]
        keep = _sample_positions(x.size, MAX_SCATTER_POINTS)
        scatter.scatter(x[keep], y[keep], s=3, alpha=0.15, color=_BLUE, linewidths=0)
        scatter.plot([low, high], [low, high], color=_GREY, linestyle=":", linewidth=0.8)
        scatter.set(xlim=(low, high), ylim=(low, high))
        scatter.set_xlabel(old_label, fontsize=7)
        scatter.set_ylabel(new_label, fontsize=7)
        correlation = float(np.corrcoef(x, y)[0, 1]) if x.size > 1 and np.ptp(x) > 0 and np.ptp(y) > 0 else math.nan
        scatter.text(0.03, 0.97, f"n={x.size:,}  r={correlation:.3f}  mean |diff|={np.mean(np.abs(y - x)):.4f}",
                     transform=scatter.transAxes, fontsize=6, va="top")

    bins = np.linspace(low, high, 41)
    for values, label, color in ((old_finite, old_label, _GREY), (new_finite, new_label, _CURRENT_COLOR)):
        if values.size:
            histograms.hist(values, bins=bins, weights=np.full(values.size, 1.0 / values.size), histtype="step",
                            color=color, linewidth=1.3, label=f"{label} (mean {values.mean():.3f})")
    histograms.set_xlim(low, high)
    histograms.set_xlabel("score", fontsize=7)
    histograms.set_ylabel("share of rows", fontsize=7)
    histograms.legend(fontsize=6)
    figure.set_layout_engine("constrained")
    return _markdown(figure, f"shadow scores: {new_label} vs {old_label}")


def trend_chart(points: Sequence[tuple[str, float]], title: str, ylabel: str) -> str:
    """A figure over labelled steps (versions, partitions), e.g. the holdout ROC AUC of each champion version.

    Non-finite values leave a gap at their label rather than dropping the label: a missing version shows.
    """
    what = f"trend chart {title!r}"
    labels = [str(label) for label, _ in points]
    values = np.array([_finite(value) if _finite(value) is not None else np.nan for _, value in points],
                      dtype=np.float64)
    if not labels or not np.isfinite(values).any():
        return nothing_to_draw(what, "no finite value")

    figure = _figure(6.0, 2.4)
    axes = figure.subplots()
    _style(axes, title)
    positions = np.arange(len(labels))
    axes.plot(positions, values, marker="o", markersize=3.5, color=_BLUE, linewidth=1.3)
    last = int(np.flatnonzero(np.isfinite(values))[-1])
    axes.annotate(f"{values[last]:.4g}", xy=(positions[last], values[last]), xytext=(-4, 5),
                  textcoords="offset points", fontsize=7, ha="right")
    step = max(1, math.ceil(len(labels) / 12))
    shown = positions[::step]
    axes.set_xticks(shown, [labels[i] if len(labels[i]) <= 16 else labels[i][:15] + "~" for i in shown],
                    rotation=30 if len(shown) > 4 else 0, ha="right" if len(shown) > 4 else "center", fontsize=6)
    axes.set_xlim(-0.5, len(labels) - 0.5)
    axes.set_ylabel(ylabel, fontsize=7)
    finite = values[np.isfinite(values)]
    if np.ptp(finite) == 0:
        axes.set_ylim(finite[0] - 0.01 * max(abs(finite[0]), 1), finite[0] + 0.01 * max(abs(finite[0]), 1))
    figure.set_layout_engine("constrained")
    return _markdown(figure, f"{title}: {len(labels)} point(s)")
