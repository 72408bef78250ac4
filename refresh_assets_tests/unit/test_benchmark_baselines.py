"""The benchmarks' baselines must do the same work as the code they are compared with."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core import features
from refresh_assets.core.scoring import risk_ranks, top_k_mask
from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb
from refresh_assets_tests.benchmarks import pandas_features


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory):
    cfg = SimulationConfig(n_players=600, seed=4, days=120)
    path = tmp_path_factory.mktemp("baseline") / "raw.duckdb"
    simulate_to_duckdb(cfg, path)
    return path, cfg


@pytest.mark.parametrize("days_back", [0, 10])  # D at the end (labels complete) and D with a NULL-label tail
def test_pandas_features_equal_the_sql_output(small_warehouse, days_back):
    path, cfg = small_warehouse
    spec = features.DatasetSpec(as_of_date=cfg.end_date() - dt.timedelta(days=days_back))
    plan = features.snapshot_plan(spec)
    sql, _ = features.load_query()
    with features.open_source(path) as con:
        expected = features.run_query(con, sql, spec.as_of_date, plan.all_dates(), spec.label_horizon_days)
        raw = pandas_features.load_raw(con)
    got = features.check_contract(pandas_features.build_features(
        raw["players"], raw["sessions"], raw["purchases"], spec.as_of_date, plan.all_dates(),
        spec.label_horizon_days))
    assert len(expected) > 500 and expected["label"].isna().sum() > 0  # the scoring snapshot is unlabelled
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(pandas_features.normalised(got), pandas_features.normalised(expected),
                                  check_exact=False, rtol=1e-12)


def test_risk_ranks_match_pandas_first_rank_with_ties():
    scores = np.random.default_rng(1).integers(0, 20, 5000) / 20  # many ties
    expected = pd.Series(scores).rank(ascending=False, method="first").astype("int64").to_numpy()
    np.testing.assert_array_equal(risk_ranks(scores), expected)
    mask = top_k_mask(scores, 0.1)
    assert mask.sum() == 500 and set(expected[mask]) == set(range(1, 501))
