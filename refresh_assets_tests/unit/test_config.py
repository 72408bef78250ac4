"""Run inputs: bad values are refused before any work, with a message naming the field."""

import pytest

from refresh_assets.cli import run_config_from_sets
from refresh_assets.config import ConfigError, preflight


def ops(**per_op):
    return {"ops": {op: {"config": cfg} for op, cfg in per_op.items()}}


def test_defaults_pass():
    assert preflight({}, "2026-06-01") == []


@pytest.mark.parametrize("run_config, partition, field", [
    (ops(training_dataset={"data_start_date": "2026-07-01"}), "2026-06-01", "data_start_date"),
    (ops(training_dataset={"data_start_date": "2026-13-01"}), "2026-06-01", "data_start_date"),
    (ops(training_dataset={"data_start_date": "2026-05-20"}), "2026-06-01", "complete 14-day label"),
    (ops(training_dataset={"label_horizon_days": 0}), "2026-06-01", "label_horizon_days"),
    (ops(candidate_hist_gb={"tuning_budget": -1}), "2026-06-01", "candidate_hist_gb.tuning_budget"),
    (ops(model_comparison={"algorithms": ["xgboost"]}), "2026-06-01", "model_comparison.algorithms"),
    (ops(model_comparison={"algorithms": []}), "2026-06-01", "algorithms"),
    (ops(model_comparison={"confidence": 1.5}), "2026-06-01", "model_comparison.confidence"),
    (ops(model_comparison={"min_candidates": 0}), "2026-06-01", "model_comparison.min_candidates"),
    (ops(training_dataset_checks={"min_label_rate": 0.6, "max_label_rate": 0.2}), "2026-06-01",
     "training_dataset_checks: min_label_rate 0.6 is above max_label_rate 0.2"),
    (ops(training_dataset_checks={"required_features": {"spend": "money"}}), "2026-06-01",
     "training_dataset_checks.required_features"),
    ({}, "not-a-date", "partition 'not-a-date' is not a date"),
    ({}, "2019-06-30", "before the first partition 2025-01-01.*REFRESH_ASSETS_PARTITION_START=2019-06-01"),
    ({}, "2999-01-01", "partition 2999-01-01 does not exist yet"),
    (ops(candidate_xgboost={"tuning_budget": 2}), "2026-06-01", "unknown op"),
])
def test_bad_inputs_are_refused_naming_the_field(run_config, partition, field):
    with pytest.raises(ConfigError, match=field):
        preflight(run_config, partition)


def test_min_candidates_is_capped_by_the_algorithms_allowed():
    from refresh_assets.config import ComparisonConfig

    assert ComparisonConfig().required_candidates() == 2
    assert ComparisonConfig(algorithms=["logreg"]).required_candidates() == 1
    assert ComparisonConfig(min_candidates=4, algorithms=["logreg", "hist_gb", "ensemble"]).required_candidates() == 3


def test_cli_sets_go_to_every_op_that_has_the_field():
    run_config, algorithms = run_config_from_sets(["tuning_budget=8", "min_improvement=0.01",
                                                   "algorithms=logreg,hist_gb"])
    cfg = run_config["ops"]
    assert {op for op in cfg if "tuning_budget" in cfg[op]["config"]} == {
        "candidate_logreg", "candidate_random_forest", "candidate_hist_gb", "candidate_ensemble"}
    assert cfg["model_comparison"]["config"] == {"min_improvement": 0.01, "algorithms": ["logreg", "hist_gb"]}
    assert algorithms == ["logreg", "hist_gb"]
    with pytest.raises(ConfigError, match="unknown setting 'tuning_budgt'"):
        run_config_from_sets(["tuning_budgt=3"])


def test_launchpad_defaults_are_the_core_defaults():
    """The guardrail and drift defaults are declared twice (plain-Python core, Dagster Config); they must agree,
    since docs/DECISIONS.md justifies one set of figures."""
    from refresh_assets.config import ComparisonConfig, DriftConfig
    from refresh_assets.core.drift import DriftSettings
    from refresh_assets.core.evaluate import GuardrailSettings

    assert ComparisonConfig().guardrails() == GuardrailSettings()
    assert DriftConfig().settings() == DriftSettings()


def test_importance_rows_default_is_the_core_default_and_negative_is_refused():
    from refresh_assets.config import TrainingConfig
    from refresh_assets.core.models import IMPORTANCE_ROWS

    assert TrainingConfig().importance_rows == IMPORTANCE_ROWS
    with pytest.raises(ConfigError, match="candidate_logreg.importance_rows"):
        preflight(ops(candidate_logreg={"importance_rows": -1}), "2026-06-01")
    run_config, _ = run_config_from_sets(["importance_rows=0"])
    assert {op: c["config"] for op, c in run_config["ops"].items()} == {
        f"candidate_{a}": {"importance_rows": 0} for a in ("logreg", "random_forest", "hist_gb", "ensemble")}


def test_deep_merge_lays_run_config_layers_over_each_other():
    from refresh_assets.local_runs import deep_merge

    base = {"ops": {"candidate_logreg": {"config": {"tuning_budget": 1, "cv_splits": 2}}}, "loggers": {"x": 1}}
    extra = {"ops": {"candidate_logreg": {"config": {"tuning_budget": 5}}, "model_comparison": {"config": {}}},
             "loggers": "replaced"}
    merged = deep_merge(base, extra)
    assert merged == {"ops": {"candidate_logreg": {"config": {"tuning_budget": 5, "cv_splits": 2}},
                              "model_comparison": {"config": {}}}, "loggers": "replaced"}
    assert base["ops"]["candidate_logreg"]["config"]["tuning_budget"] == 1  # inputs untouched
    assert deep_merge(None, None) == {} and deep_merge(base, None) == base


def test_guardrail_config_reaches_the_core_settings():
    from refresh_assets.config import ComparisonConfig

    settings = ComparisonConfig(calibration_margin=0.01, slice_margin=0.05, slice_columns=["country"],
                                min_slice_rows=200, min_slice_positives=20).guardrails()
    assert (settings.calibration_margin, settings.slice_margin, settings.slice_columns) == (0.01, 0.05, ("country",))
    assert (settings.min_slice_rows, settings.min_slice_positives) == (200, 20)


def test_list_settings_take_comma_separated_values_and_empty_means_none():
    run_config, _ = run_config_from_sets(["slice_columns=region,plan"])
    assert run_config["ops"]["model_comparison"]["config"]["slice_columns"] == ["region", "plan"]
    run_config, _ = run_config_from_sets(["slice_columns="])
    assert run_config["ops"]["model_comparison"]["config"]["slice_columns"] == []
    run_config, algorithms = run_config_from_sets(["algorithms=logreg,hist_gb"])
    assert algorithms == ["logreg", "hist_gb"]
