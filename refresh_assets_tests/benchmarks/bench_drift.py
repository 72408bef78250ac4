"""Benchmark: sampled ``check_drift`` against ``check_drift_full`` (Evidently on all rows).

    python refresh_assets_tests/benchmarks/bench_drift.py [--rows 1000000] [--features 20] [--repeats 3]
                                                          [--quick] [--no-full] [--no-edge] [--json PATH]

Generates seeded churn-like data: a reference, an undrifted current (same generator, other seed), a
drifted current where 60% of the columns shift clearly (so the dataset verdict is drift), some barely
(0.05 sd, half the threshold) and some not at all, and an 'edge' current whose numeric columns all sit
within 20% of the threshold (0.08-0.12 sd) -- the stress case where a sample can flip a verdict. Times
check_drift over ``repeats`` sample seeds per current (the first call of the process, which imports
Evidently, is reported on its own), runs check_drift_full once per current, and reports verdict
agreement, the spread of the sampled scores and how many columns sat near the threshold.
``--quick`` runs 50k rows with a 5k sample so the sampling path is still exercised.
The figures are printed as a table and as JSON on the last stdout line (or written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from refresh_assets.core.drift import DEFAULT_SAMPLE_SIZE, DriftResult, DriftSettings, check_drift, check_drift_full

QUICK_ROWS = 50_000
QUICK_SAMPLE_SIZE = 5_000
#: A column "sits near the threshold" when its full-data score is within this fraction of the threshold.
NEAR_THRESHOLD_BAND = 0.2

# Shift sizes in reference standard deviations (= the normed Wasserstein score they produce).
SHIFTS = {"strong": 0.5, "moderate": 0.2, "barely": 0.05, "none": 0.0}
NUMERIC_PLAN = ("strong", "strong", "barely", "strong", "moderate", "none", "strong", "barely")
CATEGORICAL_PLAN = ("strong", "barely", "moderate", "none")
#: Stress scenario: every numeric column shifted to within 20% of the 0.1 threshold, where flips can happen.
EDGE_SHIFTS = (0.08, 0.09, 0.11, 0.12)


def _numeric_templates(rng: np.random.Generator, rows: int) -> list[tuple[str, np.ndarray]]:
    """Churn-feature look-alikes: skewed, integer, zero-inflated, low-cardinality and mostly-NULL columns."""
    spend = rng.lognormal(1.5, 1.0, rows) * (rng.random(rows) < 0.1)
    days_since_purchase = rng.integers(0, 120, rows).astype(float)
    days_since_purchase[rng.random(rows) < 0.8] = np.nan  # NULL when never purchased
    return [
        ("tenure_days", rng.exponential(60.0, rows).astype(np.int64)),
        ("days_since_last_session", rng.integers(0, 28, rows)),
        ("sessions_7d", rng.poisson(5, rows)),
        ("sessions_28d", rng.poisson(18, rows)),
        ("minutes_7d", rng.gamma(2.0, 30.0, rows)),
        ("minutes_28d", rng.gamma(2.0, 110.0, rows)),
        ("active_days_7d", rng.integers(0, 8, rows)),
        ("active_days_28d", rng.integers(0, 29, rows)),
        ("minutes_trend", rng.lognormal(0.0, 0.5, rows)),
        ("level", rng.poisson(40, rows)),
        ("level_gain_28d", rng.poisson(6, rows)),
        ("purchases_28d", rng.poisson(0.2, rows)),  # ~6 distinct values: Wasserstein only on all rows
        ("spend_28d", spend),
        ("spend_total", spend * 3 + rng.lognormal(2.0, 1.0, rows) * (rng.random(rows) < 0.15)),
        ("days_since_last_purchase", days_since_purchase),
        ("minutes_per_session", rng.gamma(3.0, 4.0, rows)),
    ]


CATEGORIES = {
    "channel": (["organic", "paid_social", "search", "cross_promo"], [0.4, 0.3, 0.2, 0.1]),
    "country": (["US", "GB", "DE", "FR", "BR", "IN", "JP"], [0.3, 0.1, 0.1, 0.1, 0.15, 0.15, 0.1]),
    "platform": (["ios", "android"], [0.45, 0.55]),
    "device_tier": (["low", "mid", "high"], [0.3, 0.5, 0.2]),
}


def _drifted_probabilities(name: str, kind: str) -> tuple[list[str], list[float]]:
    values, probabilities = list(CATEGORIES[name][0]), list(CATEGORIES[name][1])
    if kind == "strong":  # a new category takes 20% (like the 'influencer' channel)
        return values + ["influencer"], [p * 0.8 for p in probabilities] + [0.2]
    if kind == "moderate":  # 0.25 of mass moves from the first value to the second (JS ~0.19 on platform)
        probabilities[0], probabilities[1] = probabilities[0] - 0.25, probabilities[1] + 0.25
    elif kind == "barely":  # 0.02 of mass moves from the last value to the first (JS ~0.03)
        probabilities[0], probabilities[-1] = probabilities[0] + 0.02, probabilities[-1] - 0.02
    return values, probabilities


def _categories(rng: np.random.Generator, rows: int, values: list[str], probabilities: list[float]) -> np.ndarray:
    codes = rng.choice(len(values), size=rows, p=np.asarray(probabilities) / np.sum(probabilities))
    return np.asarray(values, dtype=object)[codes]


def make_frames(rows: int, features: int, seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """{reference, undrifted, drifted, edge} frames and {column: planned drift}; ~80% numeric features.

    'edge' is an undrifted draw whose numeric columns are shifted by EDGE_SHIFTS (cyclically) -- right
    around the threshold -- to measure how often the sample flips a verdict there.
    """
    n_categorical = min(len(CATEGORIES) * 3, max(1, round(features * 0.2)))
    n_numeric = features - n_categorical
    frames = []
    plan: dict[str, str] = {}
    for offset in range(4):
        rng = np.random.default_rng([seed, offset])
        columns: dict[str, Any] = {}
        templates = _numeric_templates(rng, rows)
        for index in range(n_numeric):
            name, values = templates[index % len(templates)]
            columns[name if index < len(templates) else f"{name}_{index // len(templates) + 1}"] = values
        names = list(CATEGORIES)
        for index in range(n_categorical):
            base = names[index % len(names)]
            name = base if index < len(names) else f"{base}_{index // len(names) + 1}"
            kind = CATEGORICAL_PLAN[index % len(CATEGORICAL_PLAN)]
            plan[name] = kind
            values, probabilities = CATEGORIES[base] if offset != 2 else _drifted_probabilities(base, kind)
            columns[name] = _categories(rng, rows, values, probabilities)
        frames.append(pd.DataFrame(columns))
    reference, undrifted, drifted, edge = frames
    for index, name in enumerate(list(reference.columns[:n_numeric])):
        kind = NUMERIC_PLAN[index % len(NUMERIC_PLAN)]
        plan[name] = kind
        std = float(np.nanstd(reference[name].to_numpy(dtype=float)))
        if SHIFTS[kind]:
            drifted[name] = drifted[name] + SHIFTS[kind] * std
        edge[name] = edge[name] + EDGE_SHIFTS[index % len(EDGE_SHIFTS)] * std
    frames_by_name = {"reference": reference, "undrifted": undrifted, "drifted": drifted, "edge": edge}
    return frames_by_name, {name: plan[name] for name in reference.columns}


def _agreement(fast: DriftResult, full: DriftResult) -> dict[str, Any]:
    pairs = list(zip(fast.columns, full.columns))
    assert [a.column for a, _ in pairs] == [b.column for _, b in pairs]
    return {
        "dataset_verdict_agrees": fast.dataset_drift == full.dataset_drift,
        "column_agreement_pct": 100.0 * sum(a.drifted == b.drifted for a, b in pairs) / len(pairs),
        "methods_agree": all(a.method == b.method for a, b in pairs),
        "disagreeing_columns": [a.column for a, b in pairs if a.drifted != b.drifted],
        "score_gaps": {a.column: abs(a.score - b.score) for a, b in pairs},
    }


def _near_threshold(full: DriftResult) -> list[str]:
    return [c.column for c in full.columns if abs(c.score - c.threshold) <= NEAR_THRESHOLD_BAND * c.threshold]


def run(
    rows: int = 1_000_000,
    features: int = 20,
    repeats: int = 3,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    full: bool = True,
    edge: bool = True,
    data_seed: int = 0,
) -> dict[str, Any]:
    """Time and compare the two paths; returns JSON-safe figures (see module docstring)."""
    evidently_was_imported = "evidently" in sys.modules
    started = time.perf_counter()
    frames, plan = make_frames(rows, features, data_seed)
    reference = frames["reference"]
    generate_seconds = time.perf_counter() - started
    scenario_names = ["drifted", "undrifted"] + (["edge"] if edge else [])

    first = check_drift(reference, frames["drifted"], settings=DriftSettings(sample_size=sample_size, seed=0))
    fast_runs: dict[str, list[DriftResult]] = {name: [] for name in scenario_names}
    for repeat in range(repeats):
        settings = DriftSettings(sample_size=sample_size, seed=repeat)
        for name in scenario_names:
            fast_runs[name].append(check_drift(reference, frames[name], settings=settings))
    fast_seconds = [result.seconds for results in fast_runs.values() for result in results]

    figures: dict[str, Any] = {
        "rows": rows,
        "features": features,
        "numeric_features": int(sum(pd.api.types.is_numeric_dtype(reference[c]) for c in reference.columns)),
        "repeats": repeats,
        "sample_size": sample_size,
        "generate_seconds": round(generate_seconds, 2),
        "first_call_seconds": round(first.seconds, 2),
        "first_call_includes_evidently_import": not evidently_was_imported,
        "fast_seconds": {
            "calls": len(fast_seconds),
            "min": round(min(fast_seconds), 2),
            "median": round(statistics.median(fast_seconds), 2),
            "max": round(max(fast_seconds), 2),
        },
        "plan": plan,
        "edge_shifts": list(EDGE_SHIFTS),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    # Spread (sd) of the sampled scores across sample seeds, worst column, per scenario.
    if repeats > 1:
        figures["max_score_sd_across_seeds"] = {
            name: round(float(np.array([[c.score for c in r.columns] for r in results]).std(axis=0).max()), 5)
            for name, results in fast_runs.items()
        }

    if full:
        scenarios = {}
        full_seconds = []
        for name in scenario_names:
            baseline = check_drift_full(reference, frames[name])
            full_seconds.append(baseline.seconds)
            agreements = [_agreement(result, baseline) for result in fast_runs[name]]
            gaps = {column: max(a["score_gaps"][column] for a in agreements) for column in agreements[0]["score_gaps"]}
            worst = max(gaps, key=gaps.get)
            scenarios[name] = {
                "full_dataset_drift": baseline.dataset_drift,
                "full_drift_share": baseline.drift_share,
                "fast_drift_shares": [round(result.drift_share, 4) for result in fast_runs[name]],
                "dataset_verdict_agrees": all(a["dataset_verdict_agrees"] for a in agreements),
                "min_column_agreement_pct": min(a["column_agreement_pct"] for a in agreements),
                "methods_agree": all(a["methods_agree"] for a in agreements),
                "disagreeing_columns": sorted({c for a in agreements for c in a["disagreeing_columns"]}),
                "max_abs_score_gap": round(gaps[worst], 5),
                "max_abs_score_gap_column": worst,
                "near_threshold_columns": _near_threshold(baseline),
                "full_scores": {c.column: round(c.score, 5) for c in baseline.columns},
            }
        figures["full_seconds"] = round(statistics.mean(full_seconds), 2)
        figures["speedup"] = round(figures["full_seconds"] / figures["fast_seconds"]["median"], 1)
        figures["scenarios"] = scenarios
    return figures


def _table(figures: dict[str, Any]) -> str:
    fast = figures["fast_seconds"]
    scenarios = figures.get("scenarios", {})

    def scenario(name: str, key: str, fmt: str = "{}") -> str:
        return fmt.format(scenarios[name][key]) if name in scenarios else "-"

    sds = figures.get("max_score_sd_across_seeds", {})
    rows = [
        ("rows", f"{figures['rows']:,}"),
        ("features (numeric)", f"{figures['features']} ({figures['numeric_features']})"),
        ("sample per side", f"{figures['sample_size']:,}"),
        (f"fast s min/median/max ({fast['calls']} calls)", f"{fast['min']} / {fast['median']} / {fast['max']}"),
        ("fast s first call" + (" (incl. import)" if figures["first_call_includes_evidently_import"] else ""),
         f"{figures['first_call_seconds']}"),
        ("full s (mean per scenario)", f"{figures.get('full_seconds', '-')}"),
        ("speedup (full / median fast)", f"{figures.get('speedup', '-')}x"),
    ]
    for name in scenarios:
        rows += [
            (f"[{name}] dataset verdict full / agrees", f"{scenario(name, 'full_dataset_drift')} / "
             f"{scenario(name, 'dataset_verdict_agrees')}"),
            (f"[{name}] drift share full / fast", f"{scenario(name, 'full_drift_share', '{:.2f}')} / "
             f"{scenario(name, 'fast_drift_shares')}"),
            (f"[{name}] min per-column agreement %", scenario(name, "min_column_agreement_pct", "{:.1f}")
             + f" (flipped: {', '.join(scenarios[name]['disagreeing_columns']) or 'none'})"),
            (f"[{name}] max |fast - full| score", f"{scenario(name, 'max_abs_score_gap')} "
             f"({scenario(name, 'max_abs_score_gap_column')}); sd across seeds {sds.get(name, '-')}"),
            (f"[{name}] columns within +-{NEAR_THRESHOLD_BAND:.0%} of threshold",
             f"{len(scenarios[name]['near_threshold_columns'])}"),
        ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)} | {value}" for label, value in rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="rows per frame (default 1,000,000; 50,000 with --quick)")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-size", type=int, default=None,
                        help=f"rows per side for check_drift (default {DEFAULT_SAMPLE_SIZE:,}; "
                        f"{QUICK_SAMPLE_SIZE:,} with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows, {QUICK_SAMPLE_SIZE:,}-row sample")
    parser.add_argument("--no-full", action="store_true", help="skip check_drift_full (timing only)")
    parser.add_argument("--no-edge", action="store_true", help="skip the near-threshold stress scenario")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here instead of stdout's last line")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else 1_000_000)
    sample_size = args.sample_size or (QUICK_SAMPLE_SIZE if args.quick else DEFAULT_SAMPLE_SIZE)
    figures = run(rows, args.features, args.repeats, sample_size=sample_size, full=not args.no_full,
                  edge=not args.no_edge)
    print(_table(figures))
    text = json.dumps(figures, sort_keys=True)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return figures


if __name__ == "__main__":
    main()
