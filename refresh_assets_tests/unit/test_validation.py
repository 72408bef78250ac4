"""The dataset rules on tiny hand-made frames: each broken rule fails alone, naming the column and figure."""

import datetime as dt

import pandas as pd
import pytest

from refresh_assets.core.validation import DatasetLimits, DatasetUnderTest, validate

D = dt.date(2026, 6, 1)
LIMITS = DatasetLimits(min_train_rows=4, min_holdout_rows=4, min_holdout_positives=2, min_holdout_negatives=2,
                       max_null_rate=0.5)


def frame(n: int, date: str, labelled: bool = True, **override) -> pd.DataFrame:
    data = {"entity_id": list(range(n)), "as_of_date": pd.to_datetime([date] * n),
            "spend": [float(i) for i in range(n)], "platform": ["ios", "android"] * (n // 2) + ["ios"] * (n % 2)}
    if labelled:
        data["label"] = pd.array([i % 2 for i in range(n)], dtype="int8")
    data.update(override)
    return pd.DataFrame(data)


def dataset(**frames) -> DatasetUnderTest:
    base = {"train": frame(8, "2026-05-04"), "holdout": frame(6, "2026-05-18"),
            "scoring": frame(5, "2026-06-01", labelled=False)}
    return DatasetUnderTest(**{**base, **frames}, as_of_date=D)


def failed(data: DatasetUnderTest, limits: DatasetLimits = LIMITS) -> dict[str, str]:
    return {r.rule: r.message for r in validate(data, limits) if not r.passed}


def test_a_clean_dataset_passes_every_rule():
    results = validate(dataset(), LIMITS)
    assert [r.rule for r in results] == ["schema", "row_counts", "label_values", "label_rate", "holdout_size",
                                         "null_rates", "constant_features", "unique_keys", "no_future_dates",
                                         "slice_columns"]
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_slice_columns_default_to_the_datasets_own_text_features():
    """No slice named: the dataset's low-cardinality text features are gated, whatever the data is about."""
    result = {r.rule: r for r in validate(dataset(), LIMITS)}["slice_columns"]
    assert result.passed and result.metadata["slice_columns"] == "platform"
    assert "automatic" in result.message


def test_a_named_slice_column_the_dataset_lacks_is_refused_naming_it_and_the_fix():
    limits = DatasetLimits(**{**LIMITS.__dict__, "slice_columns": ("platform", "country")})
    message = failed(dataset(), limits)["slice_columns"]
    assert "['country'] named in model_comparison's slice_columns are not in this dataset" in message
    assert "leave slice_columns unset" in message
    none = DatasetLimits(**{**LIMITS.__dict__, "slice_columns": ()})
    assert "slice_columns" not in failed(dataset(), none)


@pytest.mark.parametrize("frames, rule, words", [
    ({"holdout": frame(6, "2026-05-18").drop(columns=["spend"])}, "schema",
     "holdout feature columns ['platform'] differ from train's ['spend', 'platform']"),
    ({"scoring": frame(5, "2026-06-01", labelled=False, spend=["a"] * 5)}, "schema",
     "feature 'spend' is float in train but text in scoring"),
    ({"train": frame(8, "2026-05-04", spend=pd.to_datetime(["2026-01-01"] * 8))}, "schema",
     "feature 'spend' has type"),
    ({"train": frame(3, "2026-05-04")}, "row_counts", "train has 3 rows, fewer than the minimum 4"),
    ({"train": frame(8, "2026-05-04", label=[0, 1, 2, 0, 1, 0, 1, 0])}, "label_values",
     "train label holds 1 value(s) other than 0/1, e.g. ['2']"),
    ({"holdout": frame(6, "2026-05-18", label=[0, 1, None, 0, 1, 0])}, "label_values",
     "holdout label has 1 NULL value(s)"),
    ({"train": frame(8, "2026-05-04", label=[0] * 8)}, "label_rate", "train has no positive label"),
    ({"holdout": frame(6, "2026-05-18", label=[1, 0, 0, 0, 0, 0])}, "holdout_size",
     "holdout has 1 positive label(s), fewer than the 2"),
    ({"train": frame(8, "2026-05-04", spend=[None] * 5 + [1.0, 2.0, 3.0])}, "null_rates",
     "feature 'spend' is NULL in 62.5% of training rows, above 50%"),
    ({"train": frame(8, "2026-05-04", platform=["ios"] * 8)}, "constant_features", "'platform' (1 distinct value)"),
    ({"train": frame(8, "2026-05-04", entity_id=[0, 0, 1, 2, 3, 4, 5, 6])}, "unique_keys",
     "train has 2 rows sharing an (entity_id, as_of_date), e.g. entity_id 0 at 2026-05-04"),
    ({"scoring": frame(5, "2026-06-08", labelled=False)}, "no_future_dates",
     "scoring.as_of_date has 5 value(s) after the refresh date 2026-06-01"),
])
def test_each_broken_rule_is_named_with_its_figure(frames, rule, words):
    problems = failed(dataset(**frames))
    assert rule in problems, problems
    assert words in problems[rule]


@pytest.mark.parametrize("spend, distinct", [
    ([3.0] * 6 + [None, None], "1 distinct value"),          # numbers: one value among NULLs
    ([None] * 8, "0 distinct values"),                        # all NULL (float)
    (pd.array([None] * 8, dtype="Int64"), "0 distinct values"),  # all NULL (nullable integer: pd.NA)
    (pd.array([7] * 8, dtype="Int64"), "1 distinct value"),
    ([True] * 8, "1 distinct value"),                         # bool takes the nunique path
])
def test_a_constant_numeric_feature_is_found_with_its_distinct_count(spend, distinct):
    problems = failed(dataset(train=frame(8, "2026-05-04", spend=spend)),
                      DatasetLimits(**{**LIMITS.__dict__, "max_null_rate": 1.0}))
    assert f"'spend' ({distinct})" in problems["constant_features"], problems


@pytest.mark.parametrize("spend", [[0.0] * 7 + [1e-12], pd.array([2, 2, 2, 2, None, 2, 2, 3], dtype="Int64"),
                                   [False] * 7 + [True]])
def test_two_values_are_enough_for_a_numeric_feature(spend):
    problems = failed(dataset(train=frame(8, "2026-05-04", spend=spend)),
                      DatasetLimits(**{**LIMITS.__dict__, "max_null_rate": 1.0}))
    assert "constant_features" not in problems, problems


def test_required_features_and_rows_the_query_returned_after_d():
    limits = DatasetLimits(**{**LIMITS.__dict__, "required_features": {"spend": "number", "country": "text"}})
    problems = failed(dataset(), limits)
    assert problems == {"schema": "required feature 'country' (text) is missing"}
    data = dataset()
    data.rows_after_as_of_date = 3
    assert "the query returned 3 row(s) with as_of_date after the refresh date 2026-06-01" in failed(data)["no_future_dates"]


def test_a_rule_that_cannot_read_the_data_fails_instead_of_crashing():
    problems = failed(dataset(train=frame(8, "2026-05-04").drop(columns=["label"])))
    assert "train is missing column(s) ['label']" in problems["schema"]
    assert problems["label_values"].startswith("could not evaluate label_values: KeyError")


# -- the daily scoring population -----------------------------------------------------------------------------

def population_failures(scoring: pd.DataFrame, expected=None, rows_after: int = 0, **limits) -> dict[str, str]:
    from refresh_assets.core.validation import PopulationLimits, PopulationUnderTest, validate_population

    data = PopulationUnderTest(scoring, D, rows_after, expected)
    return {r.rule: r.message for r in validate_population(data, PopulationLimits(**limits)) if not r.passed}


TRAINED_ON = {"spend": "number", "platform": "text"}


def test_a_clean_population_passes_with_or_without_a_champion():
    from refresh_assets.core.validation import PopulationLimits, PopulationUnderTest, validate_population

    population = frame(5, "2026-06-01", labelled=False)
    assert population_failures(population) == {}
    results = validate_population(PopulationUnderTest(population, D, 0, TRAINED_ON), PopulationLimits())
    assert [r.rule for r in results] == ["schema", "row_counts", "unique_keys", "no_future_dates", "null_rates"]
    assert "as the champion expects" in results[0].message


def test_a_population_the_champion_cannot_score_is_refused_naming_the_feature():
    missing = frame(5, "2026-06-01", labelled=False).drop(columns=["platform"])
    assert "trained on feature(s) ['platform'] that the scoring population lacks" in \
        population_failures(missing, TRAINED_ON)["schema"]
    retyped = frame(5, "2026-06-01", labelled=False, spend=["a", "b", "c", "d", "e"])
    assert "feature 'spend' is text but the champion was trained on it as number" in \
        population_failures(retyped, TRAINED_ON)["schema"]


def test_a_feature_the_champion_does_not_know_is_reported_not_refused():
    from refresh_assets.core.validation import PopulationLimits, PopulationUnderTest, check_population_schema

    extra = frame(5, "2026-06-01", labelled=False, new_feature=[1, 2, 3, 4, 5])
    result = check_population_schema(PopulationUnderTest(extra, D, 0, TRAINED_ON), PopulationLimits())
    assert result.passed and result.metadata["unused_by_champion"] == ["new_feature"]
    assert "['new_feature'] not used by the champion" in result.message


def test_population_rows_keys_dates_and_nulls():
    population = frame(5, "2026-06-01", labelled=False)
    assert "has 5 rows, fewer than the minimum 6" in population_failures(population, min_rows=6)["row_counts"]
    duplicated = pd.concat([population, population.iloc[:1]], ignore_index=True)
    assert "scoring has 2 rows sharing an (entity_id, as_of_date)" in population_failures(duplicated)["unique_keys"]
    assert "3 row(s) with as_of_date after the refresh date" in \
        population_failures(population, rows_after=3)["no_future_dates"]
    broken = frame(5, "2026-06-01", labelled=False, spend=[None, None, None, None, 1.0])
    assert "feature 'spend' is NULL in 80.0% of scoring rows, above 50%" in \
        population_failures(broken, max_null_rate=0.5)["null_rates"]


@pytest.mark.parametrize("count", [1, 3, 7, 50])
def test_first_present_is_dropna_head_across_chunk_edges(count):
    from refresh_assets.core.validation import first_present, feature_schema

    values = pd.Series([None, "a", None, None, "b", "c", None, 4, "d", None, "e"] * 3, dtype=object)
    assert first_present(values, count, chunk=4) == list(values.dropna().head(count))
    assert first_present(pd.Series([None] * 9, dtype=object), count, chunk=4) == []
    # a non-text value after the first 1,000 present ones is not looked at, as before; one within them is named
    late = pd.Series(["x"] * 1000 + [[1]] + [None] * 20_005, dtype=object)
    early = pd.Series([None] * 20_000 + [[1]] + ["x"] * 1005, dtype=object)
    assert feature_schema(pd.DataFrame({"late": late, "early": early})) == {"late": "text", "early": "list/str"}
