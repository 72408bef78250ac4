"""The champion's model card: what an ops or support person needs on one page of the UI, in Markdown.

Version, algorithm, what it was trained on, its holdout metrics and how its holdout ROC AUC moved in every
comparison since it was promoted, the gates it passed, its top features, and the command that undoes it. Built
from plain records (the registry's version, the promotion's decision record, the later comparisons) so it is
tested without Dagster; the asset only gathers them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: the holdout metrics shown on the card, in this order (those the comparison computed)
CARD_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "precision_at_top_k", "recall_at_top_k",
                "calibration_slope")
TOP_FEATURES = 8


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return "-"
    return f"{value:.{digits}f}"


def champion_trend(comparisons: Sequence[tuple[str, Mapping[str, Any]]], version: int, algorithm: str,
                   promoted_on: str, metric: str = "roc_auc") -> list[tuple[str, float]]:
    """(partition, holdout metric) of the champion ``version`` in each comparison from its promotion on.

    ``comparisons``: (partition, decision record) pairs, any order. On the promotion's own partition the champion
    was still the challenger ``algorithm``; afterwards it is ``champion_v<version>`` in the metrics."""
    points = []
    for partition, record in sorted(comparisons, key=lambda item: item[0]):
        if partition < promoted_on:
            continue
        metrics = record.get("metrics") or {}
        row = metrics.get(f"champion_v{version}") if partition != promoted_on else metrics.get(algorithm)
        value = (row or {}).get(metric)
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            points.append((partition, float(value)))
    return points


def champion_card(champion: Mapping[str, Any], decision: Mapping[str, Any] | None,
                  trend: Sequence[tuple[str, float]], top_features: Mapping[str, float] | None,
                  history: Sequence[Mapping[str, Any]], trend_image: str | None = None) -> str:
    """The card as Markdown.

    ``champion``: the registry's version record (``ModelVersion.to_dict()``); ``decision``: the decision record
    of the comparison that promoted it (``decision.json``), None when it is gone; ``trend``: from
    ``champion_trend``; ``history``: the registry's events (``ModelRegistry.history()``), oldest first;
    ``trend_image``: a Markdown image of the trend (charts.trend_chart), shown under the table when given."""
    version, algorithm = champion["version"], champion["algorithm"]
    lines = [f"### Champion v{version}: {algorithm}", "",
             "| | |", "| --- | --- |",
             f"| version | v{version} |",
             f"| algorithm | {algorithm} |",
             f"| trained on | partition {champion.get('partition_key')}, dataset `{str(champion.get('dataset_hash', ''))[:12]}` |",
             f"| promoted | {str(champion.get('created_at', ''))[:19].replace('T', ' ')} UTC, run `{str(champion.get('run_id', ''))[:8]}` |",
             f"| model file sha256 | `{str(champion.get('model_sha256', ''))[:16]}…` |", ""]
    metrics = champion.get("metrics") or {}
    shown = [m for m in CARD_METRICS if m in metrics]
    if shown:
        lines += ["**Holdout metrics at promotion**", "", "| " + " | ".join(shown) + " |",
                  "| " + " | ".join("---" for _ in shown) + " |",
                  "| " + " | ".join(_number(metrics[m]) for m in shown) + " |", ""]
    if trend:
        first = trend[0][1]
        lines += [f"**Holdout ROC AUC in each comparison since** (the champion on each later partition's holdout; "
                  f"{len(trend)} comparison(s), latest {trend[-1][1]:.4f}, {trend[-1][1] - first:+.4f} since "
                  f"promotion)", "", "| partition | ROC AUC |", "| --- | --- |"]
        lines += [f"| {partition} | {value:.4f} |" for partition, value in trend[-12:]]
        lines.append("")
        if trend_image:
            lines += [trend_image, ""]
    gates = ((decision or {}).get("decision") or {}).get("gates") or []
    if gates:
        lines += ["**Gates of its promotion**", ""]
        for gate in gates:
            if not gate.get("gated", True):
                continue
            mark = "passed" if gate.get("passed") else "FAILED"
            lines.append(f"- `{gate.get('name')}` {mark}: {gate.get('detail', '')}")
        lines.append("")
    elif decision is None:
        lines += ["**Gates of its promotion**: the comparison that promoted it is no longer in the output store.", ""]
    if top_features:
        top = sorted(top_features.items(), key=lambda item: -abs(float(item[1])))[:TOP_FEATURES]
        lines += ["**Top features** (permutation importance: the drop in ROC AUC when the column is shuffled)", "",
                  "| feature | importance |", "| --- | --- |"]
        lines += [f"| {name} | {_number(value)} |" for name, value in top]
        lines.append("")
    earlier = sorted({int(row["version"]) for row in history if int(row["version"]) != int(version)})
    if earlier:
        target = max((v for v in earlier if v < int(version)), default=earlier[-1])
        lines += ["**Undo**: make an earlier version champion again and re-score production with it:", "",
                  f"    refresh-assets rollback --version {target} --reason \"...\"", "",
                  f"(earlier versions: {', '.join(f'v{v}' for v in earlier)}; or launch `rollback_job` with "
                  f"`rollback_to_version: {target}` from the launchpad)"]
    else:
        lines += ["**Undo**: no earlier version to roll back to (this is the first champion)."]
    return "\n".join(lines)
