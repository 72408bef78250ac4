"""Batch scoring of 1M rows with the champion, end to end, against the bare ``predict_proba`` on the same frame.

End to end is what ``production_scores`` does per partition: read the scoring parquet, load the champion
(skops, SHA-256 checked), score and rank (``core.scoring.score_batch``), write the scores through the output
store (atomic write, file hashes, manifest, pointer). The baseline is the champion pipeline's
``predict_proba`` on the same rows already in memory, in one call: what a hand-written script would do.
``score_batch`` scores in chunks, preprocessing one chunk while the estimator scores the previous one, so
its scoring part is faster than that call (same scores, bit for bit: ``unit/test_scoring.py``).
Throughput = rows / second; the ratio is end-to-end throughput / baseline throughput.
"""

from __future__ import annotations


import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from refresh_assets_tests.benchmarks.common import Row, log, with_stats

TARGET_RATIO = 0.9
CHAMPION_ALGORITHM = "hist_gb"  # what the demo promotes


def champion_and_batch(workdir: Path, rows: int, players: int = 6_000, seed: int = 11) -> tuple[Path, str, Path]:
    """Train a champion on a small simulated dataset; write a ``rows``-row scoring parquet like the dataset's."""
    from refresh_assets.core import features, models
    from refresh_assets.core.artifacts import atomic_write_parquet, save_model
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    cfg = SimulationConfig(n_players=players, seed=seed)
    simulate_to_duckdb(cfg, workdir / "raw.duckdb")
    with features.open_source(workdir / "raw.duckdb") as con:
        frames = features.build_dataset(con, features.DatasetSpec(as_of_date=cfg.end_date()))
    numeric, categorical = models.feature_columns(frames.train)
    tuned = models.tune(CHAMPION_ALGORITHM, frames.train[numeric + categorical], frames.train["label"].to_numpy(),
                        frames.train["as_of_date"].to_numpy(), n_iter=2, n_splits=2, seed=seed, max_rows=20_000)
    model_path = workdir / "champion.skops"
    sha = save_model(tuned.pipeline, model_path)
    pool = pd.concat([frames.scoring, frames.holdout.drop(columns=["label"])], ignore_index=True)
    picks = np.random.default_rng(seed).integers(0, len(pool), rows)
    batch = pool.iloc[picks].reset_index(drop=True)
    batch["entity_id"] = np.arange(1, rows + 1, dtype=np.int64)
    batch["as_of_date"] = pd.Timestamp(cfg.end_date())
    batch_path = workdir / "scoring.parquet"
    atomic_write_parquet(batch_path, batch)
    return model_path, sha, batch_path


def score_end_to_end(model_path: Path, sha: str, batch_path: Path, out_root: Path, run_id: str) -> int:
    """What production_scores does with one partition's batch, without Dagster."""
    from refresh_assets.core.artifacts import OutputStore, load_model
    from refresh_assets.core.scoring import score_batch

    batch = pd.read_parquet(batch_path)
    model = load_model(model_path, sha)
    scores = score_batch(model, batch, 0.1, 1)
    with OutputStore(out_root).stage("production_scores", "2026-07-05", run_id) as out:
        out.write_parquet("scores.parquet", scores)
        out.commit({"champion_version": 1, "rows": int(len(scores))})
    return len(scores)


def run(size: dict) -> list[Row]:
    from refresh_assets.core.artifacts import load_model
    from refresh_assets.core.scoring import feature_frame

    def predict_proba(model, frame):
        return model.predict_proba(feature_frame(frame))[:, 1]

    rows = size["scoring_rows"]
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as tmp:
        work = Path(tmp)
        model_path, sha, batch_path = champion_and_batch(work, rows, size["scoring_players"])
        model = load_model(model_path, sha)
        frame = pd.read_parquet(batch_path)
        predict_proba(model, frame.head(1000))  # warm-up: first-call costs are not throughput
        runs = []
        for i in range(size["scoring_repeats"]):
            start = time.perf_counter()
            predict_proba(model, frame)
            base = time.perf_counter() - start
            start = time.perf_counter()
            n = score_end_to_end(model_path, sha, batch_path, work / "outputs", f"run{i}")
            full = time.perf_counter() - start
            runs.append({"rows": n, "end_to_end_seconds": full, "predict_proba_seconds": base,
                         "end_to_end_rows_per_s": n / full, "predict_proba_rows_per_s": n / base,
                         "ratio": base / full})
    value = statistics.median(r["end_to_end_rows_per_s"] for r in runs)
    baseline = statistics.median(r["predict_proba_rows_per_s"] for r in runs)
    ratio = statistics.median(r["ratio"] for r in runs)
    log(f"batch scoring {rows} rows: {value:,.0f} rows/s end to end vs {baseline:,.0f} rows/s predict_proba "
        f"(x{ratio:.2f})")
    return [with_stats(Row(
        name="batch_scoring",
        what=f"score {rows:,} rows with a {CHAMPION_ALGORITHM} champion end to end (read parquet, load skops model, "
             "score + rank, atomic write + manifest)",
        value=round(value), unit="rows/s", target=f">= {TARGET_RATIO}x the predict_proba throughput",
        met=ratio >= TARGET_RATIO, baseline=round(baseline), baseline_what="predict_proba on the same in-memory frame (rows/s)",
        ratio=round(ratio, 3), ratio_what="end-to-end throughput / predict_proba throughput", runs=runs,
    ))]



