"""Unit tests for refresh_assets.core.drift: Evidently drift verdicts, sampled fast path vs all rows.

Shifted columns are built so the expected score can be worked out by hand: a numeric column shifted by
c reference standard deviations has normed Wasserstein distance exactly c, and categorical columns hold
exact proportions, whose Jensen-Shannon distance is computed below from its definition.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core.drift import (
    CATEGORICAL,
    NUMERICAL,
    DriftSettings,
    _evidently_default_method,
    check_drift,
    check_drift_full,
    drift_columns,
)

# Importing evidently imports its UI server, whose web framework warns about its own deprecations.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar.*")

ROWS = 3200
CHANNELS = ["organic", "paid_social", "search", "cross_promo"]


def exact_categories(proportions: dict[str, float], rows: int, seed: int) -> np.ndarray:
    """A shuffled column holding each category in exactly the given proportion."""
    values = np.concatenate([np.full(round(share * rows), name, dtype=object) for name, share in proportions.items()])
    assert values.size == rows
    np.random.default_rng(seed).shuffle(values)
    return values


def jensen_shannon_by_hand(p: list[float], q: list[float]) -> float:
    """sqrt of the JS divergence with natural logs (scipy's default base, which Evidently uses)."""
    p_arr, q_arr = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    m = (p_arr + q_arr) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log(a[keep] / b[keep])))

    return math.sqrt((kl(p_arr, m) + kl(q_arr, m)) / 2)


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """A dataset-shaped frame: ids, date, label, three numeric and two categorical features."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "entity_id": np.arange(rows, dtype=np.int64),
            "as_of_date": pd.Timestamp("2026-05-01"),
            "minutes_7d": rng.normal(60.0, 15.0, rows),
            "spend_28d": rng.gamma(2.0, 5.0, rows),
            "sessions_28d": rng.poisson(20, rows),
            "platform": exact_categories({"ios": 0.5, "android": 0.5}, rows, seed),
            "channel": exact_categories({name: 0.25 for name in CHANNELS}, rows, seed + 1),
            "label": rng.integers(0, 2, rows),
        }
    )


def shifted(reference: pd.DataFrame, current: pd.DataFrame, column: str, stds: float) -> pd.DataFrame:
    """current with ``column`` replaced by the reference values (shuffled) + stds * reference std.

    W1(X, X + c) = c, and Evidently norms by np.std(reference), so the expected score is exactly ``stds``.
    """
    values = reference[column].to_numpy(dtype=float)
    out = current.copy()
    out[column] = np.random.default_rng(99).permutation(values) + stds * np.std(values)
    return out


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(ROWS, seed=1)


@pytest.fixture(scope="module")
def undrifted(reference):
    return check_drift(reference, make_frame(ROWS, seed=2))


@pytest.fixture(scope="module")
def sixty_percent(reference):
    """minutes_7d +1 sd, spend_28d +0.5 sd, platform 50/50 -> 90/10; sessions_28d and channel untouched."""
    current = shifted(reference, make_frame(ROWS, seed=3), "minutes_7d", 1.0)
    current = shifted(reference, current, "spend_28d", 0.5)
    current["platform"] = exact_categories({"ios": 0.9, "android": 0.1}, ROWS, seed=4)
    return check_drift(reference, current)


def by_column(result) -> dict:
    return {column.column: column for column in result.columns}


# ---------------------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------------------


def test_identical_distributions_show_no_drift(undrifted):
    assert not undrifted.dataset_drift
    assert undrifted.drift_share == 0.0 and undrifted.drifted_columns == ()
    assert [c.column for c in undrifted.columns] == ["minutes_7d", "spend_28d", "sessions_28d", "platform", "channel"]
    # 3200 reference rows > 1000: Evidently's default distances, threshold 0.1.
    assert {c.column: c.method for c in undrifted.columns} == {
        "minutes_7d": "wasserstein", "spend_28d": "wasserstein", "sessions_28d": "wasserstein",
        "platform": "jensenshannon", "channel": "jensenshannon",
    }
    assert all(c.threshold == 0.1 and 0.0 <= c.score < c.threshold for c in undrifted.columns)
    # Exact equal proportions on both sides: the Jensen-Shannon distance is exactly 0.
    assert by_column(undrifted)["platform"].score == pytest.approx(0.0, abs=1e-12)
    assert undrifted.sampled_rows == (ROWS, ROWS)  # fewer rows than sample_size: nothing sampled


def test_shift_in_sixty_percent_of_columns_is_dataset_drift_with_exactly_those_columns(sixty_percent):
    assert sixty_percent.dataset_drift
    assert set(sixty_percent.drifted_columns) == {"minutes_7d", "spend_28d", "platform"}
    assert sixty_percent.drift_share == pytest.approx(3 / 5)
    columns = by_column(sixty_percent)
    assert columns["minutes_7d"].score == pytest.approx(1.0, rel=1e-9)
    assert columns["spend_28d"].score == pytest.approx(0.5, rel=1e-9)
    assert columns["platform"].score == pytest.approx(jensen_shannon_by_hand([0.5, 0.5], [0.9, 0.1]), rel=1e-9)
    assert columns["platform"].kind == CATEGORICAL and columns["minutes_7d"].kind == NUMERICAL


def test_shift_in_one_column_flags_it_but_not_the_dataset(reference):
    current = shifted(reference, make_frame(ROWS, seed=5), "sessions_28d", 0.3)
    result = check_drift(reference, current, settings=DriftSettings(drift_share=0.5))
    assert result.drifted_columns == ("sessions_28d",)
    assert by_column(result)["sessions_28d"].score == pytest.approx(0.3, rel=1e-9)
    assert result.drift_share == pytest.approx(1 / 5) and not result.dataset_drift
    # at the default share (0.05) one drifted column of five is dataset drift
    assert check_drift(reference, current).dataset_drift


def test_a_column_with_too_few_values_is_shown_but_not_counted(reference):
    """A mostly-NULL column (800 of 3200 values per side) that drifts is flagged by Evidently, but at the
    default min_column_values (1000) it is not counted: the share and the verdict come from the other columns."""
    current = shifted(reference, make_frame(ROWS, seed=6), "minutes_7d", 0.3)
    sparse_reference, sparse_current = reference.copy(), current.copy()
    sparse_reference.loc[800:, "spend_28d"] = np.nan
    sparse_current["spend_28d"] = sparse_reference["spend_28d"] + 2 * np.nanstd(sparse_reference["spend_28d"])
    result = check_drift(sparse_reference, sparse_current, settings=DriftSettings(drift_share=0.2))
    spend = by_column(result)["spend_28d"]
    assert spend.drifted and not spend.judged
    assert result.unjudged_columns == ("spend_28d",) and result.drifted_columns == ("minutes_7d",)
    assert result.drift_share == pytest.approx(1 / 4) and result.dataset_drift
    assert "not counted: too few values" in result.markdown_table()
    assert result.to_dict()["unjudged_columns"] == ["spend_28d"]
    # the same data with the bar lowered to 800 values counts it
    counted = check_drift(sparse_reference, sparse_current,
                          settings=DriftSettings(drift_share=0.2, min_column_values=800))
    assert counted.drift_share == pytest.approx(2 / 5) and counted.unjudged_columns == ()


def test_no_column_with_enough_values_is_no_verdict_of_drift():
    small_reference, small_current = make_frame(1200, seed=7), make_frame(900, seed=8)
    small_current = shifted(small_reference.iloc[:900], small_current, "minutes_7d", 1.0)
    result = check_drift(small_reference, small_current)
    assert len(result.unjudged_columns) == 5 and result.drift_share == 0.0 and not result.dataset_drift


def test_dataset_drift_when_share_equals_the_threshold(reference):
    """Evidently's rule is share >= drift_share: 2 of 4 columns at drift_share 0.5 is dataset drift."""
    current = shifted(reference, make_frame(ROWS, seed=6), "minutes_7d", 1.0)
    current = shifted(reference, current, "spend_28d", 1.0)
    columns = ["minutes_7d", "spend_28d", "sessions_28d", "channel"]
    assert check_drift(reference, current, columns, DriftSettings(drift_share=0.5)).dataset_drift
    just_above = check_drift(reference, current, columns, DriftSettings(drift_share=0.51))
    assert just_above.drift_share == 0.5 and not just_above.dataset_drift


def test_new_category_is_flagged(reference):
    current = make_frame(ROWS, seed=7)
    current["channel"] = exact_categories({**{name: 0.1875 for name in CHANNELS}, "influencer": 0.25}, ROWS, seed=8)
    result = check_drift(reference, current, ["channel", "minutes_7d"])
    channel = by_column(result)["channel"]
    assert channel.drifted and channel.method == "jensenshannon"
    assert channel.score == pytest.approx(jensen_shannon_by_hand([0.25] * 4 + [0.0], [0.1875] * 4 + [0.25]), rel=1e-9)
    assert result.drifted_columns == ("channel",)


def test_method_and_threshold_overrides_are_honoured(reference):
    current = shifted(reference, make_frame(ROWS, seed=9), "minutes_7d", 1.0)
    current = shifted(reference, current, "spend_28d", 0.3)
    settings = DriftSettings(
        cat_method="hellinger",
        per_column_method={"spend_28d": "psi"},
        per_column_threshold={"minutes_7d": 1.5, "sessions_28d": 0.001},
    )
    columns = by_column(check_drift(reference, current, settings=settings))
    # per-column method beats the kind default; cat_method applies to every categorical column
    assert columns["spend_28d"].method == "psi" and columns["spend_28d"].threshold == 0.1
    assert columns["platform"].method == "hellinger" and columns["channel"].method == "hellinger"
    assert columns["minutes_7d"].method == "wasserstein"
    # a score of exactly 1.0 is below the raised threshold 1.5; a tiny threshold flags an undrifted column
    assert columns["minutes_7d"].threshold == 1.5 and columns["minutes_7d"].score == pytest.approx(1.0)
    assert not columns["minutes_7d"].drifted
    assert columns["sessions_28d"].threshold == 0.001 and columns["sessions_28d"].drifted


# ---------------------------------------------------------------------------------------------------------
# sampled path vs all rows
# ---------------------------------------------------------------------------------------------------------


def test_sampled_path_agrees_with_full_data_on_30k_rows():
    rows = 30_000
    reference = make_frame(rows, seed=11)
    current = shifted(reference, make_frame(rows, seed=12), "minutes_7d", 0.4)
    current["channel"] = exact_categories({"organic": 0.4, "paid_social": 0.2, "search": 0.2, "cross_promo": 0.2},
                                          rows, seed=13)
    settings = DriftSettings(sample_size=5_000, seed=3)
    fast = check_drift(reference, current, settings=settings)
    full = check_drift_full(reference, current, settings=settings)
    assert fast.sampled_rows == (5_000, 5_000) and full.sampled_rows == (rows, rows)
    assert fast.reference_rows == full.reference_rows == rows
    assert [(c.column, c.method, c.drifted) for c in fast.columns] == [
        (c.column, c.method, c.drifted) for c in full.columns
    ]
    assert fast.drifted_columns == ("minutes_7d", "channel") and fast.dataset_drift == full.dataset_drift
    # the sample estimates the full-data distance: within a few 1/sqrt(5000) ~ 0.014
    for fast_column, full_column in zip(fast.columns, full.columns):
        assert fast_column.score == pytest.approx(full_column.score, abs=0.04)


def test_sampling_is_seeded_and_method_is_chosen_on_all_rows():
    """A rare 6th value missing from the sample must not switch Wasserstein (> 5 values) to Jensen-Shannon."""
    rows = 20_000
    values = np.tile(np.arange(5.0), rows // 5)
    values[:2] = 5.0  # 2 rows in 20,000 hold the 6th distinct value
    reference = pd.DataFrame({"level_bucket": values})
    current = pd.DataFrame({"level_bucket": np.random.default_rng(0).permutation(values)})
    settings = DriftSettings(sample_size=2_000, seed=1)
    first, again = check_drift(reference, current, settings=settings), check_drift(reference, current, settings=settings)
    assert first.columns == again.columns  # same seed, same sample, same scores
    assert first.columns[0].method == "wasserstein" == check_drift_full(reference, current).columns[0].method


def test_mirror_of_evidently_default_method_matches_evidently():
    from evidently.legacy.calculations.stattests.registry import _get_default_stattest
    from evidently.legacy.core import ColumnType

    cases = [
        (NUMERICAL, ColumnType.Numerical, pd.Series(np.arange(2000.0)), pd.Series(np.arange(2000.0))),
        (NUMERICAL, ColumnType.Numerical, pd.Series(np.arange(1500) % 5), pd.Series(np.arange(1500) % 3)),
        (CATEGORICAL, ColumnType.Categorical, pd.Series(["a", "b"] * 600), pd.Series(["a"] * 10)),
        (NUMERICAL, ColumnType.Numerical, pd.Series(np.arange(1000.0)), pd.Series(np.arange(5000.0))),
        (CATEGORICAL, ColumnType.Categorical, pd.Series(["a", "b", "c"] * 300), pd.Series(["a"] * 5000)),
    ]
    for kind, column_type, ref, cur in cases:
        ours = _evidently_default_method(kind, len(ref), pd.concat([ref, cur]).nunique())
        theirs = _get_default_stattest(ref, cur, column_type).name
        assert ours == (theirs if len(ref) > 1000 else None), (kind, len(ref), theirs)


# ---------------------------------------------------------------------------------------------------------
# outputs, inputs, import cost
# ---------------------------------------------------------------------------------------------------------


def test_html_report_is_written_atomically_and_names_the_columns(reference, tmp_path):
    target = tmp_path / "reports" / "drift.html"
    target.parent.mkdir()
    target.write_text("old report", encoding="utf-8")
    result = check_drift(reference, make_frame(ROWS, seed=2), ["minutes_7d", "channel"], html_path=target)
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") or "<html" in page[:500]
    assert "minutes_7d" in page and "channel" in page and "old report" not in page
    assert [path.name for path in target.parent.iterdir()] == ["drift.html"]  # no temp file left behind
    assert len(result.columns) == 2


def test_to_dict_is_json_and_markdown_lists_every_column(sixty_percent):
    payload = json.loads(json.dumps(sixty_percent.to_dict(), allow_nan=False))
    assert payload["dataset_drift"] is True and payload["sampled_rows"] == [ROWS, ROWS]
    assert payload["drifted_columns"] == ["minutes_7d", "spend_28d", "platform"]
    assert [c["column"] for c in payload["columns"]] == [c.column for c in sixty_percent.columns]
    table = sixty_percent.markdown_table()
    assert "| column | method | score | threshold | drifted |" in table
    assert "| minutes_7d | wasserstein | 1 | 0.1 | yes |" in table
    assert "| sessions_28d | wasserstein |" in table and "DRIFT" in table


def test_drift_columns_skips_ids_dates_and_label():
    frame = make_frame(20, seed=0).assign(is_payer=True, segment=lambda f: f["channel"].astype("category"))
    assert drift_columns(frame) == {
        "minutes_7d": NUMERICAL, "spend_28d": NUMERICAL, "sessions_28d": NUMERICAL,
        "platform": CATEGORICAL, "channel": CATEGORICAL, "is_payer": CATEGORICAL, "segment": CATEGORICAL,
    }


@pytest.mark.parametrize(
    "make_call, message",
    [
        (lambda r, c: check_drift(r, c, ["minutes_7d", "nope"]), "lacks columns"),
        (lambda r, c: check_drift(r, c, ["as_of_date"]), "numeric or both categorical"),
        (lambda r, c: check_drift(r, c.assign(minutes_7d="x"), ["minutes_7d"]), "numeric or both categorical"),
        (lambda r, c: check_drift(r, c.iloc[:0]), "need rows"),
        (lambda r, c: check_drift(r, c.assign(spend_28d=np.nan), ["spend_28d"]), "no non-null values"),
        (lambda r, c: DriftSettings(sample_size=1000), "sample_size"),
        (lambda r, c: DriftSettings(drift_share=0.0), "drift_share"),
        (lambda r, c: check_drift(r, c, ["minutes_7d"], DriftSettings(per_column_method={"minutes_7": "psi"})),
         r"name column\(s\) \['minutes_7'\] that the drift check does not compare"),
        (lambda r, c: check_drift(r, c, ["minutes_7d"], DriftSettings(per_column_threshold={"label": 0.2})),
         r"\['label'\] that the drift check does not compare; its columns: \['minutes_7d'\]"),
    ],
)
def test_bad_inputs_fail_with_a_clear_message(make_call, message):
    frame = make_frame(200, seed=0)
    with pytest.raises(ValueError, match=message):
        make_call(frame, frame.copy())


def test_duckdb_style_dtypes_are_accepted():
    """Nullable Int64 (with NULLs), string, category and bool columns come out of DuckDB/pandas as such."""
    def frame(seed: int, payer_share: float) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        level = pd.array(rng.poisson(30, ROWS), dtype="Int64")
        level[:100] = pd.NA
        return pd.DataFrame({
            "level": level,
            "platform": pd.array(exact_categories({"ios": 0.5, "android": 0.5}, ROWS, seed), dtype="string"),
            "country": pd.Categorical(exact_categories({"US": 0.5, "DE": 0.5}, ROWS, seed + 1)),
            "is_payer": np.arange(ROWS) < payer_share * ROWS,
        })

    result = check_drift(frame(1, 0.1), frame(2, 0.5))
    assert {c.column: c.kind for c in result.columns} == {
        "level": NUMERICAL, "platform": CATEGORICAL, "country": CATEGORICAL, "is_payer": CATEGORICAL,
    }
    assert result.drifted_columns == ("is_payer",)
    assert by_column(result)["is_payer"].score == pytest.approx(jensen_shannon_by_hand([0.9, 0.1], [0.5, 0.5]))


def test_a_sample_without_values_asks_for_a_bigger_sample():
    sparse = pd.DataFrame({"days_since_last_purchase": np.r_[np.full(49_999, np.nan), 3.0]})
    with pytest.raises(ValueError, match="sample has no non-null values.*raise sample_size"):
        check_drift(sparse, sparse, settings=DriftSettings(sample_size=2_000))


def test_importing_the_module_does_not_import_evidently():
    code = "import sys, refresh_assets.core.drift; print('evidently' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
