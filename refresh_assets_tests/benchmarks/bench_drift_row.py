"""The suite's drift row: ``bench_drift.run`` (sampled check vs Evidently on all rows) as one result row."""

from __future__ import annotations

from refresh_assets_tests.benchmarks import bench_drift
from refresh_assets_tests.benchmarks.common import Row, log

TARGET_SECONDS = 10.0
TARGET_SPEEDUP = 8.0
QUICK_ROWS_BELOW = 200_000  # below this a 5,000-row sample keeps the sampling path exercised


def run(size: dict) -> list[Row]:
    rows = size["drift_rows"]
    sample = bench_drift.DEFAULT_SAMPLE_SIZE if rows >= QUICK_ROWS_BELOW else bench_drift.QUICK_SAMPLE_SIZE
    figures = bench_drift.run(rows, 20, size["drift_repeats"], sample_size=sample, edge=rows >= QUICK_ROWS_BELOW)
    scenarios = figures["scenarios"]
    agree = all(s["dataset_verdict_agrees"] for s in scenarios.values())
    fast, full, speedup = figures["fast_seconds"]["median"], figures["full_seconds"], figures["speedup"]
    log(f"drift check {rows:,} x 20: {fast:.2f}s sampled vs {full:.2f}s Evidently on all rows (x{speedup:.1f}), "
        f"verdicts agree: {agree}")
    runs = [{"scenario": name, "full_dataset_drift": s["full_dataset_drift"],
             "dataset_verdict_agrees": s["dataset_verdict_agrees"],
             "min_column_agreement_pct": s["min_column_agreement_pct"], "fast_drift_shares": s["fast_drift_shares"],
             "full_drift_share": s["full_drift_share"]} for name, s in scenarios.items()]
    row = Row(
        name="drift_check",
        what=f"drift check of {rows:,} rows x 20 features (sampled: {sample:,} rows per side), median of "
             f"{figures['fast_seconds']['calls']} calls over {len(scenarios)} scenarios",
        value=round(fast, 3), unit="s",
        target=f"<= {TARGET_SECONDS} s, >= {TARGET_SPEEDUP}x faster than Evidently on all rows, verdicts agree",
        met=fast <= TARGET_SECONDS and speedup >= TARGET_SPEEDUP and agree, baseline=round(full, 3),
        baseline_what="Evidently on all rows, mean per scenario (s)", ratio=round(speedup, 3),
        ratio_what="full time / sampled time (speedup)", runs=runs,
        notes=f"fast check min/median/max {figures['fast_seconds']['min']}/{fast}/{figures['fast_seconds']['max']} s; "
              f"first call in a process {figures['first_call_seconds']} s (includes importing Evidently)",
    )
    row.stats = {"speedup": {"min": speedup, "median": speedup, "max": speedup, "n": 1},
                 "fast_seconds": {**{k: figures["fast_seconds"][k] for k in ("min", "median", "max")},
                                  "n": figures["fast_seconds"]["calls"]}}
    return [row]



