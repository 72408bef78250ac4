"""Candidate churn models and their time-aware tuning.

Every candidate is a plain scikit-learn ``Pipeline`` that carries its own preprocessing, so a saved model
scores a raw dataset frame on its own and holds nothing but sklearn/numpy objects (the skops loader in
``artifacts`` only trusts those). sklearn, scipy and friends are imported inside functions: the Dagster code
location imports this module at load time and must stay fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps sklearn out of import time
    from sklearn.pipeline import Pipeline

BASE_ALGORITHMS = ("logreg", "random_forest", "hist_gb")
ALGORITHMS = BASE_ALGORITHMS + ("ensemble",)
NON_FEATURE_COLUMNS = ("entity_id", "as_of_date", "label")

# Pipeline step names: search-space keys are prefixed with MODEL_STEP ("model__C") so that best_params can be
# fed straight back into ``pipeline.set_params``.
PREPROCESS_STEP = "preprocess"
MODEL_STEP = "model"

RANDOM_FOREST_TREES = 100  # more trees never hurt accuracy, only time: fixed rather than tuned
ONE_HOT_MAX_CATEGORIES = 30  # bounds the one-hot width if a categorical column turns out high-cardinality
MISSING_CATEGORY = "__missing__"  # missing categoricals form their own category: missingness is a signal
ENSEMBLE_WEIGHT_LEVELS = (0, 1, 2, 3)  # integer levels of the voting-weight grid: readable best_params

Log = Callable[[str], None] | None


@dataclass
class TunedModel:
    """A tuned candidate: the refitted pipeline plus what the comparison step needs to report about it."""

    algorithm: str
    pipeline: Any  # sklearn Pipeline, fitted on ALL (possibly max_rows-subsampled) training rows
    best_params: dict[str, Any]  # JSON-safe, keys as in search_space (prefixed with the step name)
    cv_score: float  # mean validation score of the best candidate over the time-aware folds
    cv_scores: list[float]  # that candidate's score on each fold, oldest fold first
    fit_seconds: float  # wall time of the whole search including the final refit (the tuning cost)
    feature_importances: dict[str, float] = field(default_factory=dict)  # per input column, descending
    n_train: int = 0  # rows actually used for tuning and the refit (after max_rows)


# ----------------------------------------------------------------------------------------------- features


def _is_categorical(series: pd.Series) -> bool:
    return (
        pd.api.types.is_object_dtype(series.dtype)
        or pd.api.types.is_string_dtype(series.dtype)
        or isinstance(series.dtype, pd.CategoricalDtype)
    )


def feature_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Split the feature columns by dtype into (numeric, categorical), in frame order.

    Dtype, not a hard-coded name list, decides: the dataset SQL can grow features without touching models.
    A column that is neither (e.g. a stray datetime) is an error rather than silently fed to an imputer.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    unusable: list[str] = []
    for column in frame.columns:
        if column in NON_FEATURE_COLUMNS:
            continue
        series = frame[column]
        if _is_categorical(series):
            categorical.append(column)
        elif pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
            numeric.append(column)
        else:
            unusable.append(f"{column} ({series.dtype})")
    if unusable:
        raise ValueError(f"columns are neither numeric nor categorical: {', '.join(unusable)}")
    return numeric, categorical


def _model_frame(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The feature columns in the one representation every pipeline step copes with.

    pandas string/nullable dtypes use pd.NA, which sklearn's imputers choke on ("boolean value of NA is
    ambiguous"). So categoricals become object columns with np.nan for missing and numerics float64 with
    np.nan. Done here rather than inside the pipeline because a custom transformer would make the saved
    model untrusted for skops; the pipeline itself copes with None and np.nan.
    """
    if columns is None:
        numeric, categorical = feature_columns(frame)
        columns = [c for c in frame.columns if c in set(numeric) | set(categorical)]
    missing_columns = [c for c in columns if c not in frame.columns]
    if missing_columns:
        raise ValueError(f"frame lacks feature columns the model needs: {missing_columns}")
    prepared: dict[str, Any] = {}
    for column in columns:
        series = frame[column]
        if _is_categorical(series):
            values = series.astype(object)
            prepared[column] = values.where(values.notna(), np.nan)
        else:
            prepared[column] = series.to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame(prepared, index=frame.index)


def _pipeline_columns(pipeline: Pipeline, frame: pd.DataFrame) -> list[str]:
    """Input columns a fitted pipeline was trained on (falls back to the frame's feature columns)."""
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        numeric, categorical = feature_columns(frame)
        return [c for c in frame.columns if c in set(numeric) | set(categorical)]
    return [str(name) for name in names]


#: Permutation importances are explanation shown with each candidate, not a decision input. Measured (CPU s,
#: 20k players, default budget): 5,000 rows x 5 repeats cost 3.9 / 4.2 / 1.5 s for random_forest / hist_gb /
#: logreg on top of 48.7 / 16.8 / 2.1 s of tuning; 3,000 x 3 costs 1.7 / 1.8 / 0.7 s with the same top features.
#: At small tuning budgets they were about half of a candidate step (pyinstrument profile, issue 5).
IMPORTANCE_ROWS = 3000
IMPORTANCE_REPEATS = 3


# ----------------------------------------------------------------------------------------------- pipelines


def _check_algorithm(algorithm: str, allowed: Sequence[str] = ALGORITHMS) -> None:
    if algorithm not in allowed:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid algorithms are: {', '.join(allowed)}")


def _preprocessor(algorithm: str, numeric: list[str], categorical: list[str]) -> Any:
    """ColumnTransformer per algorithm: median+indicator imputation for numerics, scaling only for the
    linear model, one-hot for every categorical (unseen categories encode as all zeros).

    hist_gb deliberately uses one-hot rather than native categorical support: with categorical_features
    set, a fitted HistGradientBoostingClassifier holds a functools.partial, which the skops loader does
    not trust, and the categoricals here have a handful of levels, where one-hot loses nothing.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric_steps: list[Any] = [SimpleImputer(strategy="median", add_indicator=True)]
    if algorithm == "logreg":
        numeric_steps.append(StandardScaler())
    # Two imputers because one SimpleImputer detects either np.nan or None in object columns, never both,
    # and DuckDB hands NULL VARCHARs over as None: a direct predict_proba on a raw frame must still agree
    # with predict_scores.
    categorical_imputers = [
        SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
        SimpleImputer(missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY),
    ]
    encoder = OneHotEncoder(
        handle_unknown="ignore", sparse_output=False, max_categories=ONE_HOT_MAX_CATEGORIES
    )
    transformers = []
    if categorical:
        transformers.append(("categorical", make_pipeline(*categorical_imputers, encoder), list(categorical)))
    if numeric:
        transformers.append(("numeric", make_pipeline(*numeric_steps), list(numeric)))
    if not transformers:
        raise ValueError("no feature columns: need at least one numeric or categorical column")
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def build_pipeline(algorithm: str, numeric: list[str], categorical: list[str], seed: int) -> Pipeline:
    """An unfitted Pipeline(preprocess -> model) for one algorithm, default (untuned) hyper-parameters.

    "ensemble" is Pipeline(model=VotingClassifier(soft)) over one full pipeline per base algorithm, because
    each base model needs its own preprocessing.
    """
    _check_algorithm(algorithm)
    from sklearn.pipeline import Pipeline

    if algorithm == "ensemble":
        from sklearn.ensemble import VotingClassifier

        members = [(name, build_pipeline(name, numeric, categorical, seed)) for name in BASE_ALGORITHMS]
        return Pipeline([(MODEL_STEP, VotingClassifier(members, voting="soft"))])

    if algorithm == "logreg":
        from sklearn.linear_model import LogisticRegression

        model: Any = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    elif algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(
            n_estimators=RANDOM_FOREST_TREES, min_samples_leaf=5, n_jobs=1, random_state=seed
        )
    else:  # hist_gb
        from sklearn.ensemble import HistGradientBoostingClassifier

        # Early stopping off: its random validation split would ignore time order and cost determinism.
        model = HistGradientBoostingClassifier(
            early_stopping=False, categorical_features=None, random_state=seed
        )
    return Pipeline([(PREPROCESS_STEP, _preprocessor(algorithm, numeric, categorical)), (MODEL_STEP, model)])


def _weight_grid(n_members: int) -> list[list[int]]:
    """Distinct voting-weight vectors from an integer grid (proportional duplicates removed, all-zero
    dropped), equal weights first: includes every single-member vector, so the search can fall back to one
    model if the others only add noise."""
    seen: set[tuple[int, ...]] = set()
    vectors: list[list[int]] = []
    for levels in product(ENSEMBLE_WEIGHT_LEVELS, repeat=n_members):
        if not any(levels):
            continue
        divisor = math.gcd(*levels)
        reduced = tuple(level // divisor for level in levels)
        if reduced not in seen:
            seen.add(reduced)
            vectors.append(list(reduced))
    equal = [1] * n_members
    return [equal] + [v for v in vectors if v != equal]


def search_space(algorithm: str) -> dict[str, Any]:
    """Parameter distributions for RandomizedSearchCV, keys prefixed with the pipeline step name.

    Ranges are sized for tabular churn data of thousands to hundreds of thousands of rows; a fresh dict of
    fresh distributions on each call so callers can't mutate a shared one.
    """
    _check_algorithm(algorithm)
    from scipy.stats import loguniform, randint, uniform

    step = MODEL_STEP + "__"
    if algorithm == "logreg":
        return {step + "C": loguniform(1e-3, 1e2)}
    if algorithm == "random_forest":
        return {
            step + "max_depth": [4, 6, 8, 12, 16, None],
            step + "min_samples_leaf": randint(1, 51),
            step + "max_features": ["sqrt", 0.3, 0.5, 0.8],
        }
    if algorithm == "hist_gb":
        return {
            step + "learning_rate": loguniform(0.02, 0.3),
            step + "max_leaf_nodes": randint(8, 64),
            step + "min_samples_leaf": randint(10, 101),
            step + "l2_regularization": loguniform(1e-4, 10.0),
            step + "max_iter": randint(50, 301),
            step + "max_features": uniform(0.5, 0.5),  # feature subsampling per split, in [0.5, 1.0]
        }
    return {step + "weights": _weight_grid(len(BASE_ALGORITHMS))}


# ----------------------------------------------------------------------------------------------- CV splits


def snapshot_time_splits(
    snapshot_dates: Any, n_splits: int = 3, gap: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window CV folds over unique snapshot dates, as row positions.

    TimeSeriesSplit runs on the sorted unique dates (not rows), so a date is never split between training
    and validation and every validation date is later than every training date. ``gap`` skips that many
    dates between the two, e.g. to keep training labels (which look label_horizon days ahead) from peeking
    into the validation period.
    """
    from sklearn.model_selection import TimeSeriesSplit

    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    dates = pd.to_datetime(pd.Series(np.asarray(snapshot_dates)))
    if dates.isna().any():
        raise ValueError("snapshot_dates contains missing values")
    unique_dates, date_position = np.unique(dates.to_numpy(), return_inverse=True)
    needed = n_splits + 1 + gap
    if len(unique_dates) < needed:
        raise ValueError(
            f"need at least {needed} unique snapshot dates for {n_splits} time-aware folds"
            f"{f' with gap {gap}' if gap else ''}, got {len(unique_dates)}"
        )
    splits = []
    for train_dates, valid_dates in TimeSeriesSplit(n_splits=n_splits, gap=gap).split(unique_dates):
        train_rows = np.flatnonzero(np.isin(date_position, train_dates))
        valid_rows = np.flatnonzero(np.isin(date_position, valid_dates))
        splits.append((train_rows, valid_rows))
    return splits


# ----------------------------------------------------------------------------------------------- tuning


def _one_thread():
    """Cap OpenMP/BLAS pools at one thread, like n_jobs=1 for the search and the forest.

    HistGradientBoosting otherwise starts an OpenMP pool per fit; on a machine shared with other Dagster
    runs that oversubscription made small fits several times slower, not faster.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _json_safe(value: Any) -> Any:
    """numpy scalars -> Python scalars, tuples/arrays -> lists: best_params go into JSON manifests."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    return value


def _training_rows(
    X: pd.DataFrame, y: Any, snapshot_dates: Any, max_rows: int | None, seed: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Validate inputs and draw the seeded subsample (sorted, so time order and CV folds stay intact)."""
    labels = pd.Series(np.asarray(y, dtype=object))
    dates = np.asarray(snapshot_dates)
    if not (len(X) == len(labels) == len(dates)):
        raise ValueError(f"X, y and snapshot_dates differ in length: {len(X)}, {len(labels)}, {len(dates)}")
    if labels.isna().any():
        raise ValueError("y contains missing labels: drop rows whose label is not yet complete")
    labels_int = labels.astype("int64").to_numpy()
    rows = training_positions(len(X), max_rows, seed)
    return _model_frame(X.iloc[rows]).reset_index(drop=True), labels_int[rows], dates[rows]


def training_positions(n_rows: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Positions of the rows tuning and fitting use out of ``n_rows`` training rows: all of them, or the seeded
    subsample of ``max_rows`` (sorted, so time order and CV folds stay intact).

    A caller holding a larger frame on disk reads only these rows (``read_output_parquet_rows``); ``tune`` then
    keeps every row it is given, since there are at most ``max_rows``: the same rows as subsampling in memory.
    """
    rows = np.arange(n_rows)
    if max_rows is not None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if n_rows > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))
    return rows


def _run_search(
    algorithm: str,
    search: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    importance_rows: int,
    log: Log,
) -> TunedModel:
    """Fit a configured search, then collect the best candidate's scores and out-of-time importances."""
    from sklearn.base import clone

    started = time.perf_counter()
    with _one_thread():
        search.fit(X, y)
    fit_seconds = time.perf_counter() - started
    best = search.best_index_
    results = search.cv_results_
    cv_scores = [float(results[f"split{i}_test_score"][best]) for i in range(len(splits))]
    best_params = {key: _json_safe(value) for key, value in search.best_params_.items()}
    if log:
        for candidate in np.argsort(results["rank_test_score"], kind="stable")[:5]:
            params = {key: _json_safe(value) for key, value in results["params"][candidate].items()}
            mean_score = float(results["mean_test_score"][candidate])
            log(f"{algorithm}: candidate {int(candidate)} mean={mean_score:.4f} params={params}")
        log(
            f"{algorithm}: best mean={float(results['mean_test_score'][best]):.4f} "
            f"folds={[round(s, 4) for s in cv_scores]} params={best_params} in {fit_seconds:.1f}s"
        )

    importances: dict[str, float] = {}
    if importance_rows > 0:
        # Permutation importance on the last fold's (later) validation rows with a model trained on its
        # earlier rows: in-sample importance would credit whatever a forest memorised, noise included.
        train_rows, valid_rows = splits[-1]
        with _one_thread():
            fold_model = clone(search.best_estimator_).fit(X.iloc[train_rows], y[train_rows])
        importances = feature_importances(
            fold_model, X.iloc[valid_rows], y[valid_rows], seed=seed, max_rows=importance_rows
        )
    return TunedModel(
        algorithm=algorithm,
        pipeline=search.best_estimator_,
        best_params=best_params,
        cv_score=float(results["mean_test_score"][best]),
        cv_scores=cv_scores,
        fit_seconds=float(fit_seconds),
        feature_importances=importances,
        n_train=int(len(X)),
    )


def tune(
    algorithm: str,
    X: pd.DataFrame,
    y: Any,
    snapshot_dates: Any,
    n_iter: int,
    n_splits: int = 3,
    seed: int = 0,
    scoring: Any = "roc_auc",
    max_rows: int | None = None,
    log: Log = None,
    *,
    gap: int = 0,
    importance_rows: int = IMPORTANCE_ROWS,
) -> TunedModel:
    """Randomised hyper-parameter search with time-aware CV, refit on all (subsampled) training rows.

    n_iter is the tuning budget (candidates tried). Non-feature columns in X are ignored. For "ensemble"
    this tunes only the voting weights over default-parameter members; use tune_ensemble to combine
    already-tuned members. importance_rows=0 skips the (extra-fit) feature importances.
    """
    _check_algorithm(algorithm)
    if n_iter < 1:
        raise ValueError(f"n_iter (the tuning budget) must be >= 1, got {n_iter}")
    from sklearn.model_selection import RandomizedSearchCV

    X_train, y_train, dates = _training_rows(X, y, snapshot_dates, max_rows, seed)
    splits = snapshot_time_splits(dates, n_splits=n_splits, gap=gap)
    numeric, categorical = feature_columns(X_train)
    if log:
        log(
            f"{algorithm}: tuning on {len(X_train)} rows ({len(numeric)} numeric,"
            f" {len(categorical)} categorical features), {n_splits} time folds, budget {n_iter} candidates"
        )
    search = RandomizedSearchCV(
        build_pipeline(algorithm, numeric, categorical, seed),
        search_space(algorithm),
        n_iter=n_iter,
        cv=splits,
        scoring=scoring,
        refit=True,
        random_state=seed,
        n_jobs=1,
        error_score="raise",
    )
    return _run_search(algorithm, search, X_train, y_train, splits, seed, importance_rows, log)


@dataclass
class _FoldProbabilities:
    """One time fold of the ensemble search: the members fitted once on its training rows and their
    validation-row probabilities, cached so every candidate weight vector is scored without refitting."""

    train_rows: np.ndarray
    valid_rows: np.ndarray
    models: list[Any]  # fitted clones of the members in member order; kept for the last fold only
    classes: np.ndarray  # labels of the fold's training rows, sorted (VotingClassifier's classes_)
    probabilities: np.ndarray  # (n_members, n_valid_rows, n_classes), as VotingClassifier stacks them


def _fold_probabilities(
    members: Sequence[tuple[str, Any]],
    X: pd.DataFrame,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[_FoldProbabilities]:
    """Fit a clone of every member once per fold, as VotingClassifier.fit would on that fold.

    The members see the label-encoded target exactly like inside VotingClassifier (a no-op for 0/1
    labels), so the cached probabilities are the very ones a fold's VotingClassifier would average. Only the
    last fold keeps its fitted members (for the out-of-time importances): a forest on tens of thousands of
    rows is large.
    """
    from sklearn.base import clone

    folds = []
    for position, (train_rows, valid_rows) in enumerate(splits):
        classes, encoded = np.unique(y[train_rows], return_inverse=True)
        X_fold, X_valid = X.iloc[train_rows], X.iloc[valid_rows]
        fitted = [clone(member).fit(X_fold, encoded) for _, member in members]
        probabilities = np.asarray([model.predict_proba(X_valid) for model in fitted])
        kept = fitted if position == len(splits) - 1 else []
        folds.append(_FoldProbabilities(train_rows, valid_rows, kept, classes, probabilities))
    return folds


@cache
def _cached_soft_vote_class() -> type:
    """A classifier that answers like a fitted VotingClassifier(voting="soft", weights) on one validation
    frame, from that frame's cached member probabilities; lets any sklearn scorer score a weight vector.
    Built lazily (and once) to keep sklearn out of import time; never saved, so skops never sees it."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class CachedSoftVote(ClassifierMixin, BaseEstimator):
        def __init__(self, probabilities: np.ndarray, classes: np.ndarray, weights: Sequence[float]):
            self.probabilities = probabilities
            self.classes = classes
            self.weights = weights

        @property
        def classes_(self) -> np.ndarray:
            return self.classes

        def __sklearn_is_fitted__(self) -> bool:
            return True

        def predict_proba(self, X: Any) -> np.ndarray:
            if len(X) != self.probabilities.shape[1]:
                raise ValueError(
                    f"cached probabilities are for {self.probabilities.shape[1]} rows, got {len(X)}"
                )
            # the exact expression of VotingClassifier.predict_proba
            return np.average(self.probabilities, axis=0, weights=self.weights)

        def predict(self, X: Any) -> np.ndarray:
            return self.classes[np.argmax(self.predict_proba(X), axis=1)]

    return CachedSoftVote


def _weight_scores(
    folds: Sequence[_FoldProbabilities], weights: Sequence[float], scorer: Any, X: pd.DataFrame, y: np.ndarray
) -> list[float]:
    """Per-fold validation scores of the soft vote with these weights, from the cached probabilities:
    what cross_val_score gives VotingClassifier(voting="soft", weights=weights) on the same folds."""
    soft_vote = _cached_soft_vote_class()
    return [
        float(
            scorer(
                soft_vote(fold.probabilities, fold.classes, weights),
                X.iloc[fold.valid_rows],
                y[fold.valid_rows],
            )
        )
        for fold in folds
    ]


def _fold_ensemble(
    members: Sequence[tuple[str, Any]],
    fold: _FoldProbabilities,
    weights: Sequence[int],
    X: pd.DataFrame,
    y: np.ndarray,
) -> Any:
    """The ensemble with these weights fitted on the fold's training rows, reusing the fold's fitted members
    (frozen, so VotingClassifier.fit does not refit them; sklearn >= 1.6). Older sklearn refits them."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.pipeline import Pipeline

    try:
        from sklearn.frozen import FrozenEstimator
    except ImportError:  # pragma: no cover - sklearn < 1.6
        fold_members = list(members)
    else:
        fold_members = [
            (name, FrozenEstimator(model)) for (name, _), model in zip(members, fold.models, strict=True)
        ]
    ensemble = Pipeline([(MODEL_STEP, VotingClassifier(fold_members, voting="soft", weights=list(weights)))])
    return ensemble.fit(X.iloc[fold.train_rows], y[fold.train_rows])


def tune_ensemble(
    base_models: Mapping[str, TunedModel | Pipeline],
    X: pd.DataFrame,
    y: Any,
    snapshot_dates: Any,
    n_iter: int,
    n_splits: int = 3,
    seed: int = 0,
    scoring: Any = "roc_auc",
    max_rows: int | None = None,
    log: Log = None,
    *,
    gap: int = 0,
    importance_rows: int = IMPORTANCE_ROWS,
) -> TunedModel:
    """Soft-voting ensemble of clones of the tuned base pipelines, tuned over the voting weights.

    Candidates come from an integer weight grid: equal weights always first, then a seeded random draw of
    the rest up to the n_iter budget, so the plain average is always one of the candidates tried.

    The weights do not change what the members learn, so each member is fitted once per time fold and
    every candidate is scored on the cached validation probabilities (the soft vote is their weighted
    average); then the best weights (mean fold score, ties to the earliest candidate, as GridSearchCV
    ranks them) are refitted on all rows. Cost: n_splits + 1 fits per member, whatever n_iter is.
    """
    if not base_models:
        raise ValueError("tune_ensemble needs at least one base model")
    if n_iter < 1:
        raise ValueError(f"n_iter (the tuning budget) must be >= 1, got {n_iter}")
    from sklearn.base import clone
    from sklearn.ensemble import VotingClassifier
    from sklearn.metrics import check_scoring
    from sklearn.pipeline import Pipeline

    members = [
        (str(name), clone(model.pipeline if isinstance(model, TunedModel) else model))
        for name, model in base_models.items()
    ]
    grid = _weight_grid(len(members))
    rest = grid[1:]
    order = np.random.default_rng(seed).permutation(len(rest))
    candidates = [grid[0]] + [rest[i] for i in order[: n_iter - 1]]

    X_train, y_train, dates = _training_rows(X, y, snapshot_dates, max_rows, seed)
    splits = snapshot_time_splits(dates, n_splits=n_splits, gap=gap)
    if log:
        log(
            f"ensemble of {[name for name, _ in members]}: tuning weights on {len(X_train)} rows,"
            f" {n_splits} time folds, {len(candidates)} of {len(grid)} weight vectors"
        )
    ensemble = Pipeline([(MODEL_STEP, VotingClassifier(members, voting="soft"))])
    scorer = check_scoring(ensemble, scoring=scoring)
    weights_key = f"{MODEL_STEP}__weights"

    started = time.perf_counter()
    with _one_thread():
        folds = _fold_probabilities(members, X_train, y_train, splits)
        fold_scores = np.array(
            [_weight_scores(folds, weights, scorer, X_train, y_train) for weights in candidates],
            dtype=np.float64,
        )
        mean_scores = np.average(fold_scores, axis=1)
        # GridSearchCV's ranking: failed (NaN) candidates rank last, ties go to the earliest candidate
        ranking = np.where(np.isnan(mean_scores), -np.inf, mean_scores)
        best = int(np.argmax(ranking))
        best_weights = candidates[best]
        pipeline = clone(ensemble).set_params(**{weights_key: best_weights}).fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started

    cv_scores = [float(score) for score in fold_scores[best]]
    best_params = {weights_key: _json_safe(best_weights)}
    if log:
        for candidate in np.argsort(-ranking, kind="stable")[:5]:
            params = {weights_key: _json_safe(candidates[candidate])}
            mean_score = float(mean_scores[candidate])
            log(f"ensemble: candidate {int(candidate)} mean={mean_score:.4f} params={params}")
        log(
            f"ensemble: best mean={float(mean_scores[best]):.4f} folds={[round(s, 4) for s in cv_scores]}"
            f" params={best_params} in {fit_seconds:.1f}s ({len(members)} members x {len(splits) + 1} fits)"
        )

    importances: dict[str, float] = {}
    if importance_rows > 0:
        # Out-of-time permutation importance, as tune() computes it: the best weights over the members
        # fitted on the last fold's (earlier) training rows, scored on its later validation rows.
        last = folds[-1]
        with _one_thread():
            fold_model = _fold_ensemble(members, last, best_weights, X_train, y_train)
        importances = feature_importances(
            fold_model,
            X_train.iloc[last.valid_rows],
            y_train[last.valid_rows],
            seed=seed,
            max_rows=importance_rows,
        )
    return TunedModel(
        algorithm="ensemble",
        pipeline=pipeline,
        best_params=best_params,
        cv_score=float(mean_scores[best]),
        cv_scores=cv_scores,
        fit_seconds=float(fit_seconds),
        feature_importances=importances,
        n_train=int(len(X_train)),
    )


# ----------------------------------------------------------------------------------------------- scoring


def fit_pipeline(pipeline: Pipeline, X: pd.DataFrame, y: Any) -> Pipeline:
    """Fit a pipeline (e.g. from build_pipeline) on a dataset frame outside of tune().

    Applies the same input normalisation and one-thread policy as tune(), so a model fitted here scores
    exactly like a tuned one; non-feature columns in X are ignored.
    """
    with _one_thread():
        return pipeline.fit(_model_frame(X), np.asarray(y).astype("int64"))


def predict_scores(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Positive-class (churn) probability per row, float64; extra columns in X are ignored."""
    with _one_thread():
        probabilities = pipeline.predict_proba(_model_frame(X, _pipeline_columns(pipeline, X)))
    positive = np.flatnonzero(np.asarray(pipeline.classes_) == 1)
    if len(positive) != 1:
        raise ValueError(f"model has no positive class 1 among its classes {list(pipeline.classes_)}")
    return np.asarray(probabilities[:, positive[0]], dtype=np.float64)


def feature_importances(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: Any,
    seed: int = 0,
    max_rows: int = IMPORTANCE_ROWS,
    n_repeats: int = IMPORTANCE_REPEATS,
) -> dict[str, float]:
    """Permutation importance (drop in ROC AUC) per ORIGINAL input column, sorted descending.

    Model-agnostic so every candidate, ensemble included, is explained the same way; computed on a seeded
    sample of at most max_rows rows to bound cost. Values are plain floats (JSON-safe).
    """
    from sklearn.inspection import permutation_importance

    columns = _pipeline_columns(pipeline, X)
    labels = np.asarray(y).astype("int64")
    if len(labels) != len(X):
        raise ValueError(f"X and y differ in length: {len(X)} vs {len(labels)}")
    rows = np.arange(len(X))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False))
    sample = _model_frame(X.iloc[rows], columns)
    with _one_thread():
        result = permutation_importance(
            pipeline,
            sample,
            labels[rows],
            scoring="roc_auc",
            n_repeats=n_repeats,
            random_state=seed,
            n_jobs=1,
        )
    importances = {
        column: float(np.nan_to_num(mean, nan=0.0))
        for column, mean in zip(columns, result.importances_mean, strict=True)
    }
    return dict(sorted(importances.items(), key=lambda item: item[1], reverse=True))
