"""Scoring helpers on hand-made arrays."""

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core.scoring import compare_scores, score_batch, top_k_mask


def test_top_k_mask_takes_ceil_share_highest_stable_ties():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    # ceil(0.3 * 5) = 2 -> the two 0.9s (positions 1 and 3)
    assert top_k_mask(scores, 0.3).tolist() == [False, True, False, True, False]
    # ceil(0.1 * 5) = 1 -> the first 0.9 (stable)
    assert top_k_mask(scores, 0.1).tolist() == [False, True, False, False, False]


def test_compare_scores_identical_and_reversed():
    old = np.array([0.1, 0.2, 0.3, 0.4])
    same = compare_scores(old, old, 0.5)
    assert same["spearman_rank_correlation"] == pytest.approx(1.0)
    assert same["top_k_overlap"] == 1.0 and same["mean_abs_score_shift"] == 0.0
    rev = compare_scores(old, old[::-1].copy(), 0.5)
    # ranks fully reversed; top-2 old = {2,3}, top-2 new = {0,1}: no overlap; mean shift 0
    assert rev["spearman_rank_correlation"] == pytest.approx(-1.0)
    assert rev["top_k_overlap"] == 0.0
    assert rev["mean_score_shift"] == pytest.approx(0.0)
    assert rev["max_abs_score_shift"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="same length"):
        compare_scores(old, old[:2], 0.5)


class _Const:
    """A stand-in model: churn probability = the 'x' column."""

    def predict_proba(self, X):
        return np.c_[1 - X["x"].to_numpy(), X["x"].to_numpy()]


def test_score_batch_ranks_and_flags():
    frame = pd.DataFrame({"entity_id": [10, 11, 12], "as_of_date": pd.to_datetime(["2026-01-01"] * 3),
                          "x": [0.2, 0.7, 0.4]})
    out = score_batch(_Const(), frame, 0.34, champion_version=3)
    assert out["risk_rank"].tolist() == [3, 1, 2]
    assert out["top_k"].tolist() == [False, True, True]  # ceil(0.34*3) = 2
    assert (out["champion_version"] == 3).all()
    assert out["churn_score"].tolist() == [0.2, 0.7, 0.4]


@pytest.mark.parametrize("algorithm", ["logreg", "random_forest", "hist_gb"])
def test_chunked_scoring_equals_one_predict_proba_call_bit_for_bit(algorithm):
    """predict_scores overlaps preprocessing and estimation in chunks; the scores must not change at all,
    chunk boundaries, NaNs, None categories and a category unseen in training included."""
    from refresh_assets.core import models
    from refresh_assets.core.scoring import feature_frame, predict_scores
    from refresh_assets_tests.unit.test_models import make_frame

    train, label = make_frame()
    numeric, categorical = models.feature_columns(train)
    pipeline = models.fit_pipeline(models.build_pipeline(algorithm, numeric, categorical, seed=0), train, label)
    batch, _ = make_frame(seed=3)
    batch = pd.concat([batch] * 3, ignore_index=True)  # 1,080 rows
    batch.loc[::29, "platform"] = "web"  # never seen in training
    whole = np.asarray(pipeline.predict_proba(feature_frame(batch))[:, 1], dtype=np.float64)
    for chunk_rows in (97, 360, 1079, 5000):
        assert np.array_equal(predict_scores(pipeline, batch, chunk_rows=chunk_rows), whole), chunk_rows


def test_a_champion_scores_on_its_own_features_when_the_population_has_a_new_one():
    """A query changed to return a new feature before the next promotion: the champion in force still scores on
    the columns it was fitted on, in their order, and gives the same scores as without the new column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"entity_id": range(200), "spend": rng.normal(size=200),
                          "platform": rng.choice(["ios", "android"], 200)})
    labels = (train["spend"] > 0).astype(int)
    model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["platform"])],
                                                 remainder="passthrough")),
                      ("model", LogisticRegression())]).fit(train.drop(columns=["entity_id"]), labels)
    batch = train.assign(as_of_date=pd.Timestamp("2026-06-01"))
    widened = batch.assign(brand_new=rng.normal(size=200))[["brand_new", "as_of_date", "platform", "entity_id", "spend"]]
    plain = score_batch(model, batch, 0.1, 3)
    wide = score_batch(model, widened, 0.1, 3)
    np.testing.assert_array_equal(wide["churn_score"].to_numpy(), plain["churn_score"].to_numpy())


def test_a_small_batch_is_scored_on_one_openmp_thread_with_the_same_scores() -> None:
    """Below SMALL_BATCH_ROWS the OpenMP pool is limited to one thread; the scores do not change."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_info

    from refresh_assets.core import scoring

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=2_000), "b": rng.normal(size=2_000)})
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(frame, (frame["a"] > 0).astype(int))
    seen = []
    original = model.predict_proba

    def spy(X):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")
        return original(X)

    model.predict_proba = spy
    small = scoring.predict_scores(model, frame)
    assert seen and set(seen) == {1}
    np.testing.assert_array_equal(small, original(frame)[:, 1])
