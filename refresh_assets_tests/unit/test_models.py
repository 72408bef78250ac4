"""Unit tests for refresh_assets.core.models on tiny synthetic churn frames whose signal we control."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core import models

N_DATES = 6
ROWS_PER_DATE = 60
FIRST_DATE = dt.date(2024, 1, 1)


def make_frame(seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Dataset-shaped frame: churn depends strongly on `signal`, mildly on `platform`, not at all on `noise`.

    Some signal values are NaN and some platforms None (what DuckDB returns for NULL VARCHAR).
    """
    rng = np.random.default_rng(seed)
    n_rows = N_DATES * ROWS_PER_DATE
    dates = np.repeat([FIRST_DATE + dt.timedelta(days=7 * i) for i in range(N_DATES)], ROWS_PER_DATE)
    signal = rng.normal(size=n_rows)
    noise = rng.normal(size=n_rows)
    platform = rng.choice(["ios", "android"], size=n_rows).astype(object)
    logit = 3.0 * signal + 1.0 * (platform == "android") - 0.5
    label = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "entity_id": np.arange(n_rows, dtype=np.int64),
            "as_of_date": dates,
            "signal": signal,
            "noise": noise,
            "platform": platform,
        }
    )
    frame.loc[::17, "signal"] = np.nan
    frame.loc[::13, "platform"] = None
    return frame, label


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Direct sklearn calls in these tests get the same one-thread cap models applies to its own fits:
    OpenMP pools on a shared 2-core machine make tiny fits slower, not faster."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return make_frame()


@pytest.fixture(scope="module")
def tuned(data) -> dict[str, models.TunedModel]:
    """Each base algorithm tuned once (n_iter=2) on the same rows and dates, shared by several tests."""
    X, y = data
    return {
        algorithm: models.tune(
            algorithm,
            X,
            y,
            X["as_of_date"],
            n_iter=2,
            seed=0,
            # importances cost an extra fit; one algorithm is enough to check they are wired in
            importance_rows=5000 if algorithm == "logreg" else 0,
        )
        for algorithm in models.BASE_ALGORITHMS
    }


# ----------------------------------------------------------------------------------------------- features


def test_feature_columns_splits_by_dtype_in_frame_order_and_skips_non_features():
    frame = pd.DataFrame(
        {
            "entity_id": [1, 2],
            "as_of_date": pd.to_datetime(["2024-01-01", "2024-01-01"]),
            "platform": ["ios", "android"],
            "tenure_days": [3, 10],
            "country": pd.array(["US", None], dtype="string"),
            "minutes_7d": [1.5, np.nan],
            "channel": pd.Categorical(["organic", "search"]),
            "days_since_last_purchase": pd.array([None, 4], dtype="Int64"),
            "label": [0, 1],
        }
    )
    numeric, categorical = models.feature_columns(frame)
    assert numeric == ["tenure_days", "minutes_7d", "days_since_last_purchase"]
    assert categorical == ["platform", "country", "channel"]


def test_feature_columns_rejects_columns_that_are_neither_numeric_nor_categorical():
    frame = pd.DataFrame({"x": [1.0], "install_ts": pd.to_datetime(["2024-01-01"])})
    with pytest.raises(ValueError, match="install_ts"):
        models.feature_columns(frame)


# ----------------------------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("algorithm", models.ALGORITHMS)
def test_build_pipeline_fits_handles_nulls_and_unseen_categories(data, algorithm):
    X, y = data
    numeric, categorical = models.feature_columns(X)
    assert (numeric, categorical) == (["signal", "noise"], ["platform"])
    pipeline = models.fit_pipeline(models.build_pipeline(algorithm, numeric, categorical, seed=0), X, y)
    # ids and dates never reach the model
    assert list(pipeline.feature_names_in_) == ["signal", "noise", "platform"]

    scoring = pd.DataFrame(
        {
            "entity_id": [1, 2, 3, 4, 5, 6],
            "signal": [2.0, -2.0, np.nan, 2.0, -2.0, 0.0],
            "noise": [0.0, 0.0, 0.0, np.nan, np.nan, 0.0],
            # 'windows' never appeared in training; pd.NA and None are both missing values
            "platform": pd.array(["ios", "ios", "windows", "windows", pd.NA, None], dtype=object),
        }
    )
    scores = models.predict_scores(pipeline, scoring)
    assert scores.dtype == np.float64 and scores.shape == (6,)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    # churn rises with signal: a high-signal row must outrank a low-signal row, also for an unseen category
    assert scores[0] > scores[1]
    assert scores[3] > scores[4]


def test_fitted_pipelines_hold_only_types_the_skops_loader_trusts(data):
    """The artifacts module loads models with skops, trusting only these module prefixes; the ensemble
    contains one pipeline of every base algorithm, so it covers them all."""
    import skops.io

    X, y = data
    pipeline = models.build_pipeline("ensemble", ["signal", "noise"], ["platform"], seed=0)
    # the object types do not depend on how many trees there are; fewer keep the dump fast
    pipeline.set_params(model__random_forest__model__n_estimators=3, model__hist_gb__model__max_iter=3)
    models.fit_pipeline(pipeline, X, y)
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    trusted_prefixes = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
    assert [name for name in untrusted if not name.startswith(trusted_prefixes)] == []


@pytest.mark.parametrize("algorithm", models.ALGORITHMS)
def test_a_saved_model_read_back_in_the_process_predicts_what_the_file_holds(data, algorithm, tmp_path, monkeypatch):
    """save_model keeps a copy of what it wrote, so a later load_model of those bytes in the same process (the
    ensemble and the comparison reading candidates back) skips skops. The copy must score every row as the
    model skops builds from the file does, or a run's decision would depend on the executor."""
    import skops.io

    from refresh_assets.core import artifacts

    X, y = data
    pipeline = models.build_pipeline(algorithm, ["signal", "noise"], ["platform"], seed=0)
    if algorithm in ("random_forest", "ensemble"):
        pipeline.set_params(**{("model__random_forest__model__n_estimators" if algorithm == "ensemble"
                                else "model__n_estimators"): 5})
    models.fit_pipeline(pipeline, X, y)
    artifacts.clear_model_caches()
    path = tmp_path / "model.skops"
    sha = artifacts.save_model(pipeline, path)
    real_loads = skops.io.loads
    monkeypatch.setattr(skops.io, "loads", lambda *a, **k: pytest.fail("read back through skops, not the cache"))
    copy_read_back = artifacts.load_model(path, sha)
    monkeypatch.setattr(skops.io, "loads", real_loads)
    from_file = real_loads(path.read_bytes(), trusted=artifacts.check_model_types(path.read_bytes()))
    assert copy_read_back is not pipeline
    np.testing.assert_array_equal(models.predict_scores(copy_read_back, X), models.predict_scores(from_file, X))
    artifacts.clear_model_caches()


def test_build_pipeline_preprocessing_differs_per_algorithm_as_documented():
    logreg = models.build_pipeline("logreg", ["a"], ["c"], seed=0)
    forest = models.build_pipeline("random_forest", ["a"], ["c"], seed=0)
    boosting = models.build_pipeline("hist_gb", ["a"], ["c"], seed=0)
    ensemble = models.build_pipeline("ensemble", ["a"], ["c"], seed=0)

    def numeric_steps(pipeline):
        return [type(step).__name__ for step in pipeline.named_steps["preprocess"].transformers[1][1]]

    assert numeric_steps(logreg) == ["SimpleImputer", "StandardScaler"]
    assert numeric_steps(forest) == ["SimpleImputer"]
    assert forest.named_steps["model"].n_jobs == 1
    assert numeric_steps(boosting) == ["SimpleImputer"]
    assert boosting.named_steps["model"].early_stopping is False  # no random, time-blind validation split
    assert [name for name, _ in ensemble.named_steps["model"].estimators] == list(models.BASE_ALGORITHMS)
    assert ensemble.named_steps["model"].voting == "soft"


def test_unknown_algorithm_is_rejected_naming_the_valid_ones():
    for call in (
        lambda: models.build_pipeline("xgboost", ["a"], [], seed=0),
        lambda: models.search_space("xgboost"),
    ):
        with pytest.raises(ValueError) as error:
            call()
        assert "xgboost" in str(error.value)
        assert all(name in str(error.value) for name in models.ALGORITHMS)


def test_search_space_keys_are_pipeline_parameters():
    for algorithm in models.ALGORITHMS:
        pipeline = models.build_pipeline(algorithm, ["a"], ["c"], seed=0)
        space = models.search_space(algorithm)
        assert space and set(space) <= set(pipeline.get_params())


def test_ensemble_weight_grid_is_deduplicated_and_starts_with_equal_weights():
    grid = models._weight_grid(2)
    # levels 0..3 for two members, all-zero dropped, proportional duplicates ((2,2), (2,0), ...) removed
    assert grid[0] == [1, 1]
    assert sorted(map(tuple, grid)) == sorted(
        [(0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]
    )


# ----------------------------------------------------------------------------------------------- splits


def test_snapshot_time_splits_exact_rows_on_hand_built_dates():
    d = [FIRST_DATE + dt.timedelta(days=i) for i in range(8)]  # d[0] .. d[7]
    row_dates = [d[2], d[0], d[7], d[1], d[4], d[3], d[6], d[5], d[0], d[7]]
    # 8 unique dates, 3 folds -> blocks of 8 // 4 = 2 dates: validate {d2,d3}, {d4,d5}, {d6,d7}
    expected = [
        ([1, 3, 8], [0, 5]),
        ([0, 1, 3, 5, 8], [4, 7]),
        ([0, 1, 3, 4, 5, 7, 8], [2, 6, 9]),
    ]
    for as_given in (row_dates, pd.Series(pd.to_datetime(row_dates)), [str(x) for x in row_dates]):
        splits = models.snapshot_time_splits(as_given, n_splits=3)
        assert [(list(train), list(valid)) for train, valid in splits] == expected


def test_snapshot_time_splits_gap_skips_dates_between_train_and_validation():
    d = [FIRST_DATE + dt.timedelta(days=i) for i in range(8)]
    splits = models.snapshot_time_splits(d, n_splits=3, gap=1)
    assert [(list(train), list(valid)) for train, valid in splits] == [
        ([0], [2, 3]),
        ([0, 1, 2], [4, 5]),
        ([0, 1, 2, 3, 4], [6, 7]),
    ]


@pytest.mark.parametrize("n_splits", [2, 3, 5])
def test_snapshot_time_splits_never_validate_on_or_before_a_training_date(n_splits):
    rng = np.random.default_rng(n_splits)
    row_dates = np.array([FIRST_DATE + dt.timedelta(days=int(k)) for k in rng.integers(0, 10, size=200)])
    splits = models.snapshot_time_splits(row_dates, n_splits=n_splits)
    assert len(splits) == n_splits
    for train, valid in splits:
        assert len(train) and len(valid) and not set(train) & set(valid)
        assert max(row_dates[train]) < min(row_dates[valid])
    # expanding window: each fold trains on everything the previous fold trained and validated on
    for (train_a, valid_a), (train_b, _) in zip(splits, splits[1:]):
        assert set(train_a) | set(valid_a) == set(train_b)


def test_snapshot_time_splits_needs_more_dates_than_folds():
    three_dates = [FIRST_DATE + dt.timedelta(days=i) for i in (0, 1, 2, 2, 1)]
    with pytest.raises(ValueError, match="at least 4 unique snapshot dates"):
        models.snapshot_time_splits(three_dates, n_splits=3)
    with pytest.raises(ValueError, match="at least 5 unique snapshot dates"):
        models.snapshot_time_splits(three_dates + [FIRST_DATE + dt.timedelta(days=9)], n_splits=3, gap=1)


# ----------------------------------------------------------------------------------------------- tuning


@pytest.mark.parametrize("algorithm", models.BASE_ALGORITHMS)
def test_tune_reports_a_learnable_best_candidate_and_refits_it(data, tuned, algorithm):
    X, _ = data
    result = tuned[algorithm]
    assert result.algorithm == algorithm
    assert set(result.best_params) == set(models.search_space(algorithm))
    json.dumps(result.best_params)  # JSON-safe for the run manifest
    fitted_params = result.pipeline.get_params()
    assert all(fitted_params[key] == value for key, value in result.best_params.items())
    assert 0.5 < result.cv_score <= 1.0
    assert len(result.cv_scores) == 3
    assert result.cv_score == pytest.approx(np.mean(result.cv_scores))
    assert result.n_train == len(X)
    assert result.fit_seconds > 0


def test_tune_cv_scores_are_the_time_folds_scores(data, tuned):
    """Refitting the chosen logreg on each time fold by hand reproduces the reported fold scores."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    X, y = data
    result = tuned["logreg"]
    by_hand = []
    for train, valid in models.snapshot_time_splits(X["as_of_date"], n_splits=3):
        fold_model = models.fit_pipeline(clone(result.pipeline), X.iloc[train], y[train])
        by_hand.append(roc_auc_score(y[valid], models.predict_scores(fold_model, X.iloc[valid])))
    assert result.cv_scores == pytest.approx(by_hand)


def test_tune_is_deterministic_for_a_seed(data, tuned):
    """Same rows, seed and budget as the fixture's forest: the same candidate wins with the same score."""
    X, y = data
    again = models.tune("random_forest", X, y, X["as_of_date"], n_iter=2, seed=0, importance_rows=0)
    assert again.best_params == tuned["random_forest"].best_params
    assert again.cv_score == tuned["random_forest"].cv_score
    assert again.cv_scores == tuned["random_forest"].cv_scores


def test_tune_max_rows_draws_a_seeded_subsample_and_logs_progress(data):
    X, y = data
    lines: list[str] = []

    def run(seed, log=None):
        return models.tune(
            "logreg", X, y, X["as_of_date"], n_iter=2, seed=seed, max_rows=300, importance_rows=0, log=log
        )

    first, same_seed, other_seed = run(5, lines.append), run(5), run(6)
    assert first.n_train == same_seed.n_train == other_seed.n_train == 300
    assert first.cv_scores == same_seed.cv_scores
    assert first.cv_scores != other_seed.cv_scores  # a different seed draws different rows
    assert lines and all(line.startswith("logreg") for line in lines)
    assert "300 rows" in lines[0]


def test_tune_rejects_unfinished_labels_and_bad_budget(data):
    X, y = data
    with_null = pd.array(y, dtype="Int64")
    with_null[0] = pd.NA
    with pytest.raises(ValueError, match="missing labels"):
        models.tune("logreg", X, with_null, X["as_of_date"], n_iter=1)
    with pytest.raises(ValueError, match="n_iter"):
        models.tune("logreg", X, y, X["as_of_date"], n_iter=0)


def test_tune_ensemble_matches_or_beats_weakest_member_and_is_its_weighted_average(data, tuned):
    X, y = data
    # two members keep the test fast; the weight grid itself is tested above
    members = {name: tuned[name] for name in ("logreg", "hist_gb")}
    lines: list[str] = []
    result = models.tune_ensemble(
        members, X, y, X["as_of_date"], n_iter=2, seed=0, importance_rows=0, log=lines.append
    )
    assert result.algorithm == "ensemble"
    assert len(result.cv_scores) == 3  # same three time folds as the members
    assert result.cv_score >= min(member.cv_score for member in members.values())
    assert any("'model__weights': [1, 1]}" in line for line in lines)  # the plain average is always tried
    weights = np.asarray(result.best_params["model__weights"], dtype=float)
    assert weights.shape == (2,) and weights.sum() > 0

    # members are clones refitted on the same rows with the same params and seeds, so the ensemble's
    # scores are exactly the weighted average of the tuned members' scores
    ensemble_scores = models.predict_scores(result.pipeline, X)
    member_scores = np.array([models.predict_scores(member.pipeline, X) for member in members.values()])
    assert np.allclose(ensemble_scores, weights @ member_scores / weights.sum())
    voting = result.pipeline.named_steps["model"]
    assert [name for name, _ in voting.estimators] == list(members)
    assert all(member is not members[name].pipeline for name, member in voting.estimators)


def test_cached_probability_scores_equal_cross_val_score_of_the_voting_classifier(data, tuned):
    """Scoring a weight vector on the members' cached fold probabilities gives what sklearn's cross_val_score
    gives VotingClassifier(voting="soft", weights=w) refitted on the same time folds, and tune_ensemble
    reports exactly those fold scores for the weights it picks."""
    from sklearn.base import clone
    from sklearn.ensemble import VotingClassifier
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import cross_val_score

    X, y = data
    X_model = models._model_frame(X)
    splits = models.snapshot_time_splits(X["as_of_date"], n_splits=3)
    members = [(name, clone(tuned[name].pipeline)) for name in models.BASE_ALGORITHMS]
    folds = models._fold_probabilities(members, X_model, y, splits)
    scorer = get_scorer("roc_auc")

    def by_sklearn(weights):
        voting = VotingClassifier(members, voting="soft", weights=list(weights))
        return cross_val_score(voting, X_model, y, cv=splits, scoring="roc_auc", n_jobs=1)

    for weights in ([1, 1, 1], [3, 1, 2], [0, 2, 1], [1, 0, 0]):
        cached = models._weight_scores(folds, weights, scorer, X_model, y)
        assert np.allclose(cached, by_sklearn(weights), rtol=0.0, atol=1e-9), weights

    result = models.tune_ensemble(
        {name: tuned[name] for name in models.BASE_ALGORITHMS},
        X, y, X["as_of_date"], n_iter=6, seed=1, importance_rows=0,
    )
    expected = by_sklearn(result.best_params["model__weights"])
    assert np.allclose(result.cv_scores, expected, rtol=0.0, atol=1e-9)
    assert result.cv_score == pytest.approx(np.mean(expected), abs=1e-9)
    # equal weights are always a candidate, so the chosen weights score at least as well
    assert result.cv_score >= np.mean(by_sklearn([1, 1, 1])) - 1e-9


@pytest.mark.parametrize(("n_splits", "importance_rows"), [(3, 0), (4, 100)])
def test_tune_ensemble_fits_each_member_once_per_fold_plus_the_final_refit(
    data, tuned, monkeypatch, n_splits, importance_rows
):
    """The cost does not grow with the weight budget: n_splits fold fits + 1 refit per member, and the
    out-of-time importances reuse the last fold's fits (needs sklearn's FrozenEstimator, sklearn >= 1.6)."""
    import functools
    from collections import Counter

    import skops.io
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if importance_rows:
        pytest.importorskip("sklearn.frozen")
    fits: Counter[str] = Counter()

    def counting(original):
        @functools.wraps(original)
        def fit(self, *args, **kwargs):
            fits[type(self).__name__] += 1
            return original(self, *args, **kwargs)

        return fit

    for model_class in (LogisticRegression, RandomForestClassifier, HistGradientBoostingClassifier):
        monkeypatch.setattr(model_class, "fit", counting(model_class.fit))

    X, y = data
    result = models.tune_ensemble(
        tuned, X, y, X["as_of_date"], n_iter=7, n_splits=n_splits, seed=0, importance_rows=importance_rows
    )
    assert fits == {
        "LogisticRegression": n_splits + 1,
        "RandomForestClassifier": n_splits + 1,
        "HistGradientBoostingClassifier": n_splits + 1,
    }
    assert len(result.cv_scores) == n_splits
    assert bool(result.feature_importances) == bool(importance_rows)
    # the saved model stays a plain sklearn VotingClassifier pipeline the skops loader trusts
    voting = result.pipeline.named_steps["model"]
    assert type(voting).__name__ == "VotingClassifier"
    assert voting.weights == result.best_params["model__weights"]
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(result.pipeline))
    trusted_prefixes = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
    assert [name for name in untrusted if not name.startswith(trusted_prefixes)] == []


# ----------------------------------------------------------------------------------------------- importances


def test_feature_importances_rank_signal_above_noise_per_original_column(data, tuned):
    X, y = data
    importances = models.feature_importances(tuned["hist_gb"].pipeline, X, y, seed=0, max_rows=200)
    assert set(importances) == {"signal", "noise", "platform"}  # input columns, not one-hot outputs
    assert list(importances)[0] == "signal"
    assert importances["signal"] > importances["noise"]
    assert list(importances.values()) == sorted(importances.values(), reverse=True)
    assert all(type(value) is float for value in importances.values())
    json.dumps(importances)
    # tune() stores out-of-time importances computed the same way
    stored = tuned["logreg"].feature_importances
    assert list(stored)[0] == "signal" and stored["signal"] > stored["noise"]


@pytest.mark.parametrize("algorithm", models.BASE_ALGORITHMS)
def test_predict_scores_is_positive_class_probability_ignoring_extra_columns(data, tuned, algorithm):
    X, _ = data
    pipeline = tuned[algorithm].pipeline
    reordered = X[["platform", "noise", "as_of_date", "signal", "entity_id"]].assign(label=0)
    # a direct predict_proba on the raw frame (None for missing platform, as DuckDB returns) must agree,
    # so a model loaded elsewhere scores like predict_scores
    expected = pipeline.predict_proba(X[["signal", "noise", "platform"]])[:, 1]
    assert X["platform"].isna().any()
    assert np.allclose(models.predict_scores(pipeline, reordered), expected)
    # pandas string dtype with pd.NA (which sklearn's imputers reject) scores like the None version
    as_string = X.astype({"platform": "string"})
    assert np.allclose(models.predict_scores(pipeline, as_string), expected)


# ----------------------------------------------------------------------------------------------- import cost


def test_importing_models_does_not_import_sklearn():
    code = (
        "import sys, refresh_assets.core.models; "
        "loaded = [m for m in sys.modules if m.startswith(('sklearn', 'scipy'))]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
