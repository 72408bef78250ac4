"""Batch scoring with a champion, and the shadow test that compares two champions on the same batch.

The shadow test answers "what changes for the business if we switch?": how the ranking of players moves
(Spearman rank correlation), how many of the top-k most at-risk players stay the same, and how much the
scores shift on average.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from refresh_assets.core.features import KEY_COLUMNS, LABEL_COLUMN


def feature_frame(frame: pd.DataFrame, model=None) -> pd.DataFrame:
    """The model's input: the columns it was fitted on (``feature_names_in_``), in that order, or every column but
    the keys and the label. A scoring population may hold a feature the champion was not trained on (a query
    changed before the next promotion); the champion scores on its own features."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None and all(name in frame.columns for name in names):
        return frame[list(names)]
    return frame.drop(columns=[c for c in (*KEY_COLUMNS, LABEL_COLUMN) if c in frame.columns])


#: Rows per scoring chunk: small enough for the preprocessed block to stay in cache, large enough that the
#: per-call overhead of the pipeline is negligible (measured: 50k-100k rows per chunk score 1M rows ~1.4x
#: faster than one predict_proba call).
CHUNK_ROWS = 65_536
#: A batch this small is scored on one OpenMP thread. HistGradientBoosting's predict opens a parallel region per
#: tree; for a few hundred rows the threads' barriers cost more than the work, and much more on a busy machine
#: (a 600-player refresh's 662-row holdout: 1.4-2.9 s for the ensemble on 2 threads with other jobs running,
#: 0.07-0.15 s on one). Rows are scored independently, so the scores are the same.
SMALL_BATCH_ROWS = 20_000


def predict_scores(model, frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Churn probability for each row, float64; the same values as ``model.predict_proba`` on the whole frame.

    A large batch of a ``Pipeline`` is scored in chunks, two at a time: this thread preprocesses chunk i+1
    (the ColumnTransformer runs on one core) while a second thread runs the estimator on chunk i (its
    predict releases the GIL). Every sklearn estimator scores rows independently, so chunking changes
    nothing in the result (a test holds it bit-identical).
    """
    from sklearn.pipeline import Pipeline

    if len(frame) <= SMALL_BATCH_ROWS:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            return np.asarray(model.predict_proba(feature_frame(frame, model))[:, 1], dtype=np.float64)
    if not isinstance(model, Pipeline) or len(model.steps) < 2 or len(frame) <= chunk_rows:
        return np.asarray(model.predict_proba(feature_frame(frame, model))[:, 1], dtype=np.float64)
    from concurrent.futures import ThreadPoolExecutor

    preprocess, estimator = model[:-1], model[-1]
    scores = np.empty(len(frame), dtype=np.float64)

    def estimate(start: int, block) -> None:
        scores[start:start + block.shape[0]] = estimator.predict_proba(block)[:, 1]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") as pool:
        pending = None
        for start in range(0, len(frame), chunk_rows):
            block = preprocess.transform(feature_frame(frame.iloc[start:start + chunk_rows], model))
            if pending is not None:
                pending.result()  # at most one chunk waits: memory stays at two preprocessed blocks
            pending = pool.submit(estimate, start, block)
        pending.result()
    return scores


def _top_k_count(n: int, share: float) -> int:
    return min(n, max(1, math.ceil(share * n))) if n else 0


def risk_ranks(scores: np.ndarray) -> np.ndarray:
    """1 for the highest score, n for the lowest; ties ranked by position (pandas' ``method="first"``)."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1, dtype=np.int64)
    return ranks


def top_k_mask(scores: np.ndarray, share: float) -> np.ndarray:
    """True for the ceil(share * n) highest scores (ties broken by position, stable)."""
    return risk_ranks(scores) <= _top_k_count(len(scores), share)


def score_batch(model, frame: pd.DataFrame, top_k_share: float, champion_version: int) -> pd.DataFrame:
    """The production scores table: keys, score, rank (1 = most at risk), flagged top-k, version.

    One sort gives both the rank and the top-k flag (the batch can hold millions of rows).
    """
    scores = predict_scores(model, frame)
    ranks = risk_ranks(scores)
    out = frame[list(KEY_COLUMNS)].copy()
    out["churn_score"] = scores
    out["risk_rank"] = ranks
    out["top_k"] = ranks <= _top_k_count(len(scores), top_k_share)
    out["champion_version"] = champion_version
    return out


def compare_scores(old: np.ndarray, new: np.ndarray, top_k_share: float) -> dict[str, float]:
    """How a new champion's scores differ from the old one's on the same rows."""
    from scipy.stats import spearmanr

    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    if old.shape != new.shape or len(old) == 0:
        raise ValueError(f"score arrays must be non-empty and the same length, got {old.shape} and {new.shape}")
    old_top, new_top = top_k_mask(old, top_k_share), top_k_mask(new, top_k_share)
    shift = new - old
    rho = spearmanr(old, new).statistic if len(old) > 1 else float("nan")
    return {
        "rows": int(len(old)),
        "spearman_rank_correlation": float(rho),
        "top_k_share": float(top_k_share),
        "top_k_overlap": float((old_top & new_top).sum() / max(1, new_top.sum())),
        "mean_score_old": float(old.mean()),
        "mean_score_new": float(new.mean()),
        "mean_score_shift": float(shift.mean()),
        "mean_abs_score_shift": float(np.abs(shift).mean()),
        "max_abs_score_shift": float(np.abs(shift).max()),
    }
