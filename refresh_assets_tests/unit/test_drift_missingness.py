"""The drift check's share checks: a column whose feed broke (NULLs) or that collapsed onto one value drifts.

Evidently's distances ignore NULLs and barely move when a category gains share, so ``check_drift`` also
compares each column's NULL share (all rows) and, for categories, the share of the current data's most common
value (the rows Evidently saw) -- flagged when the share moved by at least a minimum change AND a
two-proportion z-test agrees. Frames are built with exact proportions so the expected shares are known.
"""

from __future__ import annotations

import json
import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from refresh_assets.core.drift import (
    CATEGORICAL,
    NULL_SHARE,
    NUMERICAL,
    TOP_VALUE_SHARE,
    DriftSettings,
    check_drift,
    check_drift_full,
    two_proportion_p_value,
)
from refresh_assets_tests.unit.test_drift import exact_categories, jensen_shannon_by_hand, make_frame

# Importing evidently imports its UI server, whose web framework warns about its own deprecations.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar.*")

ROWS = 5000


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(ROWS, seed=21)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return make_frame(ROWS, seed=22)


def nulled(frame: pd.DataFrame, column: str, share: float, seed: int = 0) -> pd.DataFrame:
    """``frame`` with exactly ``share`` of its rows of ``column`` set NULL (a broken feed)."""
    out = frame.copy()
    rows = np.random.default_rng(seed).choice(len(out), size=round(share * len(out)), replace=False)
    series = out[column].astype(np.float64) if out[column].dtype.kind in "iuf" else out[column].astype(object)
    series.iloc[rows] = np.nan if series.dtype.kind == "f" else None
    out[column] = series
    return out


def by_column(result) -> dict:
    return {column.column: column for column in result.columns}


# ---------------------------------------------------------------------------------------------------------
# missingness
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("column, kind", [("minutes_7d", NUMERICAL), ("channel", CATEGORICAL)])
def test_a_nulled_column_is_drift_and_named(reference, clean, column, kind, share):
    result = check_drift(reference, nulled(clean, column, share))
    broken = by_column(result)[column]
    assert result.dataset_drift and result.drifted_columns == (column,)
    assert broken.kind == kind and broken.drifted and broken.judged
    assert broken.drifted_by == (NULL_SHARE,)  # the distance on the values left did not see it
    assert not broken.distance_drifted
    check = broken.check(NULL_SHARE)
    assert check.reference == 0.0 and check.current == pytest.approx(share)
    assert check.sizes == (ROWS, ROWS) and check.judged and check.p_value < 1e-12
    if share == 0.9:
        # 500 values left: too few for the distance (min_column_values 1000), yet the NULL share counts it
        assert not broken.distance_judged


def test_a_clean_copy_is_not_drift(reference, clean):
    result = check_drift(reference, clean)
    assert not result.dataset_drift and result.drifted_columns == () and result.unjudged_columns == ()
    for column in result.columns:
        methods = [check.method for check in column.checks]
        assert methods == ([NULL_SHARE, TOP_VALUE_SHARE] if column.kind == CATEGORICAL else [NULL_SHARE])
        assert not any(check.drifted for check in column.checks) and all(check.judged for check in column.checks)
    # exact 25% per channel on both sides: the most common value's share is the same
    top = by_column(result)["channel"].check(TOP_VALUE_SHARE)
    assert top.reference == top.current == 0.25 and top.change == 0.0


def test_a_naturally_null_heavy_column_is_not_drift(reference, clean):
    """70% NULL in the training data and in the scoring population: a property of the column, not a break."""
    result = check_drift(nulled(reference, "spend_28d", 0.7, seed=1), nulled(clean, "spend_28d", 0.7, seed=2))
    spend = by_column(result)["spend_28d"]
    assert not result.dataset_drift and not spend.drifted and spend.judged
    check = spend.check(NULL_SHARE)
    assert check.reference == check.current == pytest.approx(0.7) and not check.drifted


def test_a_small_significant_wobble_on_many_rows_is_not_drift():
    """2% -> 3% NULL on 50,000 rows is very 'significant' and means nothing: the minimum change (0.10) rules."""
    rows = 50_000
    values = np.random.default_rng(0).normal(size=rows)
    reference, current = pd.DataFrame({"x": values.copy()}), pd.DataFrame({"x": values.copy()})
    reference.loc[: int(0.02 * rows) - 1, "x"] = np.nan
    current.loc[: int(0.03 * rows) - 1, "x"] = np.nan
    check = by_column(check_drift(reference, current))["x"].check(NULL_SHARE)
    assert check.change == pytest.approx(0.01) and check.p_value < 1e-6 and not check.drifted
    # the same data with the minimum change lowered to 0.005 is drift
    lowered = check_drift(reference, current, settings=DriftSettings(null_share_delta=0.005))
    assert lowered.drifted_columns == ("x",)


def test_on_few_rows_the_z_test_keeps_a_large_change_from_being_called_drift():
    """A 0.12 move on 100 rows a side (p ~ 0.09) is noise; the same shares on 2000 rows (p ~ 1e-14) are not."""
    def frames(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        reference = pd.DataFrame({"x": np.arange(rows, dtype=float)})
        current = reference.copy()
        reference.loc[: int(0.40 * rows) - 1, "x"] = np.nan
        current.loc[: int(0.52 * rows) - 1, "x"] = np.nan
        return reference, current

    settings = DriftSettings(min_column_values=20)
    small = by_column(check_drift(*frames(100), settings=settings))["x"].check(NULL_SHARE)
    assert small.change == pytest.approx(0.12) and 0.05 < small.p_value < 0.2 and not small.drifted
    large = by_column(check_drift(*frames(2000), settings=settings))["x"].check(NULL_SHARE)
    assert large.p_value < 1e-10 and large.drifted


def test_too_few_rows_leave_the_null_check_unjudged():
    reference = pd.DataFrame({"x": np.r_[np.arange(500.0), np.full(100, np.nan)]})
    current = pd.DataFrame({"x": np.r_[np.arange(100.0), np.full(500, np.nan)]})
    result = check_drift(reference, current)  # 600 rows a side < min_column_values (1000)
    column = by_column(result)["x"]
    assert not column.check(NULL_SHARE).judged and not column.check(NULL_SHARE).drifted
    assert not column.judged and result.drifted_columns == () and not result.dataset_drift


# ---------------------------------------------------------------------------------------------------------
# collapse
# ---------------------------------------------------------------------------------------------------------


def test_a_category_collapsed_to_one_value_is_drift(reference, clean):
    current = clean.copy()
    current["channel"] = exact_categories({"organic": 0.85, "paid_social": 0.05, "search": 0.05, "cross_promo": 0.05},
                                          ROWS, seed=3)
    result = check_drift(reference, current)
    channel = by_column(result)["channel"]
    assert result.dataset_drift and result.drifted_columns == ("channel",)
    assert TOP_VALUE_SHARE in channel.drifted_by
    top = channel.check(TOP_VALUE_SHARE)
    assert top.value == "organic" and top.reference == 0.25 and top.current == 0.85
    assert top.change == pytest.approx(0.60)


def test_a_collapse_the_distance_misses_is_caught():
    """platform 60/40 -> 72/28 (30% of the rows collapsed onto 'ios'): Jensen-Shannon 0.09 < 0.1, top share +0.12."""
    reference = pd.DataFrame({"platform": exact_categories({"ios": 0.6, "android": 0.4}, ROWS, seed=1)})
    current = pd.DataFrame({"platform": exact_categories({"ios": 0.72, "android": 0.28}, ROWS, seed=2)})
    platform = check_drift(reference, current).columns[0]
    assert platform.score == pytest.approx(jensen_shannon_by_hand([0.6, 0.4], [0.72, 0.28]), rel=1e-9)
    assert platform.score < platform.threshold and not platform.distance_drifted
    assert platform.drifted and platform.drifted_by == (TOP_VALUE_SHARE,)
    assert platform.check(TOP_VALUE_SHARE).change == pytest.approx(0.12)


def test_a_collapse_onto_a_new_default_value_is_caught(reference, clean):
    """An upstream COALESCE(channel, 'unknown') on 40% of the rows: a value the reference never held."""
    current = clean.copy()
    current.loc[: int(0.4 * ROWS) - 1, "channel"] = "unknown"
    top = by_column(check_drift(reference, current))["channel"].check(TOP_VALUE_SHARE)
    assert top.value == "unknown" and top.reference == 0.0 and top.current == pytest.approx(0.4) and top.drifted


def test_a_category_losing_concentration_is_not_a_collapse(reference):
    """Only a rise of the current data's most common value is a collapse: organic 55% -> 40% (the others +5 points
    each) is not one; such a change is left to the distance."""
    skewed, spread = reference.copy(), reference.copy()
    skewed["channel"] = exact_categories({"organic": 0.55, "paid_social": 0.15, "search": 0.15, "cross_promo": 0.15},
                                         ROWS, seed=4)
    spread["channel"] = exact_categories({"organic": 0.4, "paid_social": 0.2, "search": 0.2, "cross_promo": 0.2},
                                         ROWS, seed=5)
    top = by_column(check_drift(skewed, spread))["channel"].check(TOP_VALUE_SHARE)
    assert top.value == "organic" and top.change == pytest.approx(-0.15) and not top.drifted


def test_category_string_and_bool_dtypes_get_the_collapse_check():
    def frame(seed: int, ios: float, payer: float) -> pd.DataFrame:
        return pd.DataFrame({
            "platform": pd.Categorical(exact_categories({"ios": ios, "android": 1 - ios}, ROWS, seed)),
            "country": pd.array(exact_categories({"US": 0.5, "DE": 0.5}, ROWS, seed + 1), dtype="string"),
            "is_payer": np.arange(ROWS) < payer * ROWS,
        })

    result = check_drift(frame(1, 0.5, 0.3), frame(2, 0.7, 0.45))
    tops = {c.column: c.check(TOP_VALUE_SHARE) for c in result.columns}
    assert tops["platform"].value == "ios" and tops["platform"].change == pytest.approx(0.2)
    assert tops["platform"].drifted
    assert tops["country"].change == 0.0 and not tops["country"].drifted
    # False is the most common value of is_payer on both sides: 0.70 -> 0.55 is no collapse
    assert tops["is_payer"].value == "False" and tops["is_payer"].change == pytest.approx(-0.15)
    assert set(result.drifted_columns) == {"platform", "is_payer"}  # is_payer by its distance only
    assert by_column(result)["is_payer"].drifted_by == ("jensenshannon",)


# ---------------------------------------------------------------------------------------------------------
# settings, sampling, outputs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("off", [0, 0.0, None])
def test_the_checks_can_be_turned_off(reference, clean, off):
    broken = nulled(clean, "minutes_7d", 0.6)
    broken["channel"] = exact_categories({"organic": 0.85, "paid_social": 0.05, "search": 0.05, "cross_promo": 0.05},
                                         ROWS, seed=3)
    no_null = check_drift(reference, broken, settings=DriftSettings(null_share_delta=off))
    assert no_null.drifted_columns == ("channel",)
    assert all(check.method != NULL_SHARE for column in no_null.columns for check in column.checks)
    no_top = check_drift(reference, broken, settings=DriftSettings(top_value_delta=off))
    assert "minutes_7d" in no_top.drifted_columns
    assert all(check.method != TOP_VALUE_SHARE for column in no_top.columns for check in column.checks)
    neither = check_drift(reference, broken, settings=DriftSettings(null_share_delta=off, top_value_delta=off))
    assert all(column.checks == () for column in neither.columns)
    assert "minutes_7d" not in neither.drifted_columns  # the distance alone does not see the NULLs


@pytest.mark.parametrize("settings, message", [
    (dict(null_share_delta=1.5), "null_share_delta"),
    (dict(top_value_delta=-0.1), "top_value_delta"),
    (dict(share_alpha=0.0), "share_alpha"),
])
def test_bad_share_settings_fail_clearly(settings, message):
    with pytest.raises(ValueError, match=message):
        DriftSettings(**settings)


def test_the_launchpad_config_maps_the_share_settings():
    from refresh_assets.config import DriftConfig

    settings = DriftConfig(null_share_delta=0.2, top_value_delta=0.0, share_alpha=0.01).settings()
    assert (settings.null_share_delta, settings.top_value_delta, settings.share_alpha) == (0.2, 0.0, 0.01)
    fields = DriftConfig.model_fields
    assert {"null_share_delta", "top_value_delta", "share_alpha"} <= set(fields)


def test_null_shares_come_from_all_rows_and_top_values_from_the_sample():
    rows = 30_000
    reference = make_frame(rows, seed=31)
    current = nulled(make_frame(rows, seed=32), "spend_28d", 0.5)
    current["channel"] = exact_categories({"organic": 0.7, "paid_social": 0.1, "search": 0.1, "cross_promo": 0.1},
                                          rows, seed=5)
    settings = DriftSettings(sample_size=5_000, seed=3)
    fast = check_drift(reference, current, settings=settings)
    full = check_drift_full(reference, current, settings=settings)
    assert fast.sampled_rows == (5_000, 5_000)
    spend_fast, spend_full = by_column(fast)["spend_28d"], by_column(full)["spend_28d"]
    assert spend_fast.check(NULL_SHARE) == spend_full.check(NULL_SHARE)  # all rows in both
    assert spend_fast.check(NULL_SHARE).sizes == (rows, rows)
    top_fast = by_column(fast)["channel"].check(TOP_VALUE_SHARE)
    top_full = by_column(full)["channel"].check(TOP_VALUE_SHARE)
    assert top_fast.sizes == (5_000, 5_000) and top_full.sizes == (rows, rows)
    assert top_fast.current == pytest.approx(top_full.current, abs=0.03)
    assert fast.drifted_columns == full.drifted_columns == ("spend_28d", "channel")


def test_to_dict_and_markdown_carry_the_shares(reference, clean):
    current = nulled(clean, "minutes_7d", 0.6)
    current["channel"] = exact_categories({"organic": 0.85, "paid_social": 0.05, "search": 0.05, "cross_promo": 0.05},
                                          ROWS, seed=3)
    result = check_drift(reference, current)
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["drifted_columns"] == ["minutes_7d", "channel"]
    columns = {c["column"]: c for c in payload["columns"]}
    minutes = columns["minutes_7d"]
    assert minutes["drifted"] is True and minutes["drifted_by"] == ["null_share"]
    assert minutes["distance_drifted"] is False and minutes["method"] == "wasserstein"
    assert minutes["null_share"]["reference"] == 0.0 and minutes["null_share"]["current"] == pytest.approx(0.6)
    assert minutes["null_share"]["sizes"] == [ROWS, ROWS] and minutes["null_share"]["drifted"] is True
    assert "top_value_share" not in minutes
    top = columns["channel"]["top_value_share"]
    assert top["value"] == "organic" and top["reference"] == 0.25 and top["current"] == pytest.approx(0.85)
    assert "top_value_share" in columns["channel"]["drifted_by"]
    assert columns["sessions_28d"]["drifted_by"] == [] and columns["sessions_28d"]["null_share"]["drifted"] is False

    table = result.markdown_table()
    assert "| minutes_7d | wasserstein |" in table and "| yes (null_share) |" in table
    assert "| minutes_7d | 0.0% -> 60.0% (+60.0 pts" in table
    assert "'organic' 25.0% -> 85.0% (+60.0 pts" in table and "| top_value_share |" in table
    assert "null_share moved by >= 0.1" in table and "top_value_share moved up by >= 0.1" in table


def test_two_proportion_p_value_by_hand_and_its_false_alarm_rate():
    # 20/100 vs 35/100: pooled 0.275, z = 0.15 / sqrt(0.275 * 0.725 * 0.02) = 2.3755
    z = 0.15 / math.sqrt(0.275 * 0.725 * 0.02)
    assert two_proportion_p_value(20, 100, 35, 100) == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert two_proportion_p_value(20, 100, 35, 100) == pytest.approx(0.01753, abs=1e-4)
    assert two_proportion_p_value(0, 100, 0, 50) == 1.0 and two_proportion_p_value(3, 0, 1, 10) == 1.0
    from refresh_assets_tests.benchmarks.bench_share_checks import rates

    # no change at 1000 values a side: the z-test alone fires at ~alpha, together with the 0.10 change never
    figures = rates(1000, 1000, 0.5, 0.5, 50_000, 0.10, 0.001, np.random.default_rng(0))
    assert 0.0003 < figures["z_test_alone"] < 0.002 and figures["both"] <= 1e-4


# ---------------------------------------------------------------------------------------------------------
# what drift_sensor sees
# ---------------------------------------------------------------------------------------------------------


def test_drift_sensor_requests_a_refresh_naming_the_broken_column(reference, clean):
    """The asset's metadata ``drifted_column_names`` is ``list(result.drifted_columns)``: a column broken by NULLs
    is a drift the sensor answers, and another column breaking later is a new drift."""
    from refresh_assets.sensors import drift_requests

    def report(instance, partition, result):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="drift_report", partition=partition,
            metadata={"dataset_drift": result.dataset_drift, "drift_share": round(result.drift_share, 4),
                      "drifted_columns": len(result.drifted_columns),
                      "drifted_column_names": dg.MetadataValue.json(list(result.drifted_columns))}))

    with dg.instance_for_test() as instance:
        report(instance, "2026-06-01", check_drift(reference, nulled(clean, "spend_28d", 0.6)))
        requests, cursor, _ = drift_requests(instance, None, min_interval_hours=0.0, now=1e10)
        assert len(requests) == 1 and requests[0].tags["refresh_assets/drifted_columns"] == "spend_28d"
        assert requests[0].tags["refresh_assets/new_drift"] == "spend_28d"
        # the same column still broken the next day: the same drift, no second refresh
        report(instance, "2026-06-02", check_drift(reference, nulled(clean, "spend_28d", 0.6, seed=1)))
        requests, cursor, skipped = drift_requests(instance, cursor, min_interval_hours=0.0, now=1e10)
        assert requests == [] and "same drift" in skipped[0]
        # then the channel collapses too: a new drift
        collapsed = nulled(clean, "spend_28d", 0.6, seed=2)
        collapsed["channel"] = "organic"
        report(instance, "2026-06-03", check_drift(reference, collapsed))
        requests, _, _ = drift_requests(instance, cursor, min_interval_hours=0.0, now=1e10)
        assert len(requests) == 1 and requests[0].tags["refresh_assets/new_drift"] == "channel"
