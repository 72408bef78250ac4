"""Bad raw data and bad run inputs, each refused with a message naming the problem, the champion untouched.

One project promotes a champion once (partition D; the session fixture ``promoted_project``). Every case then refreshes D again with
a broken user query (``Warehouse.query_path`` wrapping the packaged query), a broken config, or a tampered
model file, and must: fail, say what was wrong, and leave the registry, the model files and every
downstream output pointer exactly as they were. Data cases are stopped by the blocking dataset checks (or,
for a result that cannot even be split, by the query step), so no candidate is trained.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest

from refresh_assets.core.features import load_query
from refresh_assets.definitions import build_defs
from refresh_assets.local_runs import deep_merge, failure_summary
from refresh_assets.resources import ArtifactStore, Registry, Warehouse
from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG, PRE_DRIFT

pytestmark = pytest.mark.integration

D = PRE_DRIFT[0]
DOWNSTREAM = ("training_dataset", "candidate_logreg", "candidate_random_forest", "candidate_hist_gb", "candidate_ensemble",
              "model_comparison", "champion_model", "champion_shadow_test", "production_scores")


@pytest.fixture(scope="module")
def promoted(promoted_project):
    return promoted_project


def state(project, downstream=DOWNSTREAM) -> dict:
    """Everything a bad input must not change: registry rows, model file bytes, the current dataset and every
    downstream pointer."""
    registry = project.registry()
    models = sorted((project.root / "registry").rglob("*.skops"))
    store = project.store()
    return {
        "champion": registry.current_champion().to_dict(),
        "versions": [v.to_dict() for v in registry.versions()],
        "events": [e.to_dict() for e in registry.events()],
        "model_files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in models},
        "pointers": {asset: store.current(asset, D) for asset in downstream},
    }


def defs_with_query(project, tmp_path: Path, sql: str):
    """The project's definitions with a user query file in the warehouse resource."""
    query = tmp_path / "user_query.sql"
    query.write_text(sql)
    return build_defs({
        "warehouse": Warehouse(location=project.defs.resources["warehouse"].location, query_path=str(query)),
        "artifacts": ArtifactStore(root=str(project.outputs)),
        "registry": Registry(root=str(project.root / "registry")),
    })


def refresh_with_query(project, tmp_path: Path, sql: str, run_config: dict | None = None, partition: str = D):
    """Refresh a partition (D) with a user query file; returns (run result, failure lines)."""
    defs = defs_with_query(project, tmp_path, sql)
    config = deep_merge(LIGHT_RUN_CONFIG, run_config)
    result = defs.resolve_job_def("refresh_job").execute_in_process(
        instance=project.instance, partition_key=partition, run_config=config, raise_on_error=False)
    return result, failure_summary(project.instance, result.run_id)


def failed_checks(project, run_id: str) -> dict[str, str]:
    """check name -> description of every failed check evaluation of a run."""
    failed = {}
    for entry in project.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed:
            failed[evaluation.check_name] = evaluation.description or ""
    return failed


def wrap(select: str, where: str = "") -> str:
    """A user query over the packaged one: ``SELECT <select> FROM base [<where>]``."""
    base, _ = load_query()
    return f"SELECT {select} FROM ({base}) AS base {where}"


# (case id, user SQL, extra run config, failed check -> words its message must hold)
DATA_CASES = [
    ("wrong_feature_type", wrap("* REPLACE (CAST(tenure_days AS VARCHAR) AS tenure_days)"),
     {"ops": {"training_dataset_checks": {"config": {"required_features": {"tenure_days": "number"}}}}},
     {"schema": "required feature 'tenure_days' must be number, got text"}),
    ("date_typed_feature", wrap("*, as_of_date - INTERVAL 3 DAY AS snapshot_copy"), None,
     {"schema": "feature 'snapshot_copy' has type"}),
    ("duplicate_entity_rows", wrap("*") + " UNION ALL " + wrap("*", "WHERE entity_id % 10 = 0"), None,
     {"unique_keys": "rows sharing an (entity_id, as_of_date)"}),
    ("all_null_feature", wrap("* REPLACE (NULL::DOUBLE AS minutes_7d)"), None,
     {"null_rates": "feature 'minutes_7d' is NULL in 100.0% of training rows",
      "constant_features": "'minutes_7d' (0 distinct values)"}),
    ("constant_feature", wrap("* REPLACE (3 AS level)"), None,
     {"constant_features": "'level' (1 distinct value)"}),
    ("label_not_0_1", wrap("* REPLACE (CASE WHEN label = 1 THEN 2 ELSE label END AS label)"), None,
     {"label_values": "value(s) other than 0/1, e.g. ['2']"}),
    ("null_training_labels", wrap("* REPLACE (CASE WHEN entity_id % 7 = 0 THEN NULL ELSE label END AS label)"),
     None, {"label_values": "train label has"}),
    ("empty_partition", wrap("*", "WHERE false"), None, {"row_counts": "train has 0 rows"}),
    ("no_positive_labels", wrap("* REPLACE (CASE WHEN label IS NULL THEN NULL ELSE 0 END AS label)"), None,
     {"label_rate": "train has no positive label"}),
    ("dates_in_the_future", wrap("*") + " UNION ALL " +
     wrap("* REPLACE (as_of_date + INTERVAL 7 DAY AS as_of_date)", "WHERE as_of_date = $as_of_date"), None,
     {"no_future_dates": "row(s) with as_of_date after the refresh date " + D}),
    ("holdout_too_small_for_bootstrap",
     wrap("*", "WHERE label IS NULL OR as_of_date < $as_of_date - INTERVAL 28 DAY OR entity_id % 200 = 0"), None,
     {"holdout_size": "the bootstrap comparison needs"}),
    ("label_rate_out_of_bounds", wrap("*"),
     {"ops": {"training_dataset_checks": {"config": {"max_label_rate": 0.05}}}},
     {"label_rate": "outside [0.01, 0.05]"}),
]


@pytest.mark.parametrize("case, sql, run_config, expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_stopped_by_a_blocking_check(promoted, tmp_path, case, sql, run_config, expected):
    before = state(promoted)
    result, _ = refresh_with_query(promoted, tmp_path, sql, run_config)
    assert not result.success
    failed = failed_checks(promoted, result.run_id)
    for check, words in expected.items():
        assert check in failed, f"{case}: check {check} passed; failed: {failed}"
        assert words in failed[check], f"{case}: {check} said {failed[check]!r}"
    # blocking: not one downstream step started
    started = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert started == {"training_dataset", "training_dataset_checks"}
    assert state(promoted) == before


def test_a_refused_dataset_is_never_read_and_the_accepted_one_stays_current(promoted, tmp_path):
    """A refused refresh leaves the dataset accepted before current; the daily scoring_job of that day scores
    its own population (never the refused dataset); the refused output is kept on disk for inspection."""
    store = promoted.store()
    accepted = store.current("training_dataset", D)
    result, failures = refresh_with_query(promoted, tmp_path, wrap("* REPLACE (3 AS level)"))
    assert not result.success
    assert any("refused by 1 blocking check(s): constant_features" in f for f in failures), failures
    assert any(f"the previous accepted dataset ({accepted.name}) stays current" in f for f in failures), failures
    refused_dir = store.list_outputs("training_dataset", D)[-1]
    assert refused_dir.name.startswith(result.run_id) and store.current("training_dataset", D) == accepted
    assert promoted.store().read_manifest(refused_dir)["run_id"] == result.run_id  # kept, complete, not current

    scoring = promoted.defs.resolve_job_def("scoring_job").execute_in_process(
        instance=promoted.instance, partition_key=D, raise_on_error=False)
    assert scoring.success
    population = store.current("scoring_population", D)
    assert store.read_manifest(population)["run_id"] == scoring.run_id
    for asset in ("production_scores", "drift_report"):
        manifest = store.read_manifest(store.current(asset, D))
        assert manifest["run_id"] == scoring.run_id
        assert manifest["inputs"]["scoring_population"]["output_dir"] == str(population)
        assert str(refused_dir) not in json.dumps(manifest["inputs"])


def test_a_day_whose_only_dataset_was_refused_is_still_scored(promoted, tmp_path):
    """Daily scoring needs no refresh of the day: a day whose refresh was refused (nothing current for its
    training_dataset) is scored from its own population, with the champion in force."""
    fresh = "2026-05-11"  # refreshed by no test
    result, _ = refresh_with_query(promoted, tmp_path, wrap("* REPLACE (3 AS level)"), partition=fresh)
    assert not result.success
    failures = failure_summary(promoted.instance, result.run_id)
    assert any(f"no dataset of {fresh} is current" in f for f in failures), failures
    assert promoted.store().current("training_dataset", fresh) is None
    champion = promoted.registry().current_champion().version
    scoring = promoted.defs.resolve_job_def("scoring_job").execute_in_process(
        instance=promoted.instance, partition_key=fresh, raise_on_error=False)
    assert scoring.success, failure_summary(promoted.instance, scoring.run_id)
    scores = promoted.store().read_manifest(promoted.store().current("production_scores", fresh))
    assert scores["champion_version"] == champion and scores["rows"] > 0
    assert promoted.store().current("training_dataset", fresh) is None


def test_a_run_without_the_checks_step_applies_the_same_rules_before_publishing(promoted, tmp_path):
    """Materializing the dataset alone (no checks step in the run) still refuses bad data."""
    from refresh_assets.assets.dataset import training_dataset

    before = state(promoted)
    defs = defs_with_query(promoted, tmp_path, wrap("* REPLACE (CASE WHEN label = 1 THEN 2 ELSE label END AS label)"))
    result = dg.materialize([training_dataset], partition_key=D, instance=promoted.instance,
                            resources=defs.resources, raise_on_error=False)
    assert not result.success
    steps = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert steps == {"training_dataset"}
    failures = failure_summary(promoted.instance, result.run_id)
    assert any("refused by" in f and "label_values" in f for f in failures), failures
    assert state(promoted) == before

    good = dg.materialize([training_dataset], partition_key=D, instance=promoted.instance,
                          resources=defs_with_query(promoted, tmp_path, wrap("*")).resources)
    assert good.success
    published = promoted.store().current("training_dataset", D)
    assert published != before["pointers"]["training_dataset"]
    assert promoted.store().read_manifest(published)["run_id"] == good.run_id


QUERY_STEP_CASES = [
    ("user_sql_wrong_columns", wrap("entity_id, as_of_date, label AS churned, tenure_days"),
     "missing required column(s) ['label']"),
    ("user_sql_only_keys", wrap("entity_id, as_of_date, label"), "no feature columns"),
    ("list_typed_feature", wrap("* REPLACE ([sessions_7d] AS sessions_7d)"),
     "feature 'sessions_7d' holds ndarray values"),
    ("user_sql_syntax_error", "SELEC entity_id FROM players", "Parser Error"),
    ("user_sql_unknown_table", "SELECT * FROM player_events", "player_events"),
]


@pytest.mark.parametrize("case, sql, words", QUERY_STEP_CASES, ids=[c[0] for c in QUERY_STEP_CASES])
def test_a_query_result_that_cannot_be_split_fails_the_query_step(promoted, tmp_path, case, sql, words):
    before = state(promoted)
    result, failures = refresh_with_query(promoted, tmp_path, sql)
    assert not result.success
    assert len(failures) == 1 and failures[0].startswith("step training_dataset failed")
    assert words in failures[0]
    # a SQL or contract error is not retried as transient
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries == []
    assert state(promoted) == before


CONFIG_CASES = [
    ("negative_budget", {"candidate_hist_gb": {"config": {"tuning_budget": -1}}}, D,
     "candidate_hist_gb.tuning_budget"),
    ("start_after_partition", {"training_dataset": {"config": {"data_start_date": "2026-05-01"}}}, D,
     "data_start_date"),
    ("not_a_date", {"training_dataset": {"config": {"data_start_date": "2026-13-01"}}}, D,
     "data_start_date must be a date"),
    ("bootstrap_out_of_range", {"model_comparison": {"config": {"confidence": 1.5}}}, D,
     "model_comparison.confidence"),
    ("label_bounds_crossed", {"training_dataset_checks": {"config": {"min_label_rate": 0.5,
                                                                      "max_label_rate": 0.1}}}, D,
     "min_label_rate 0.5 is above max_label_rate 0.1"),
]


@pytest.mark.parametrize("case, ops, partition, words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_refused_by_the_first_step_before_any_data_is_read(promoted, case, ops, partition, words):
    before = state(promoted)
    dataset_before = promoted.store().current("training_dataset", D)
    config = deep_merge(LIGHT_RUN_CONFIG, {"ops": ops})
    result = promoted.defs.resolve_job_def("refresh_job").execute_in_process(
        instance=promoted.instance, partition_key=partition, run_config=config, raise_on_error=False)
    assert not result.success
    failures = failure_summary(promoted.instance, result.run_id)
    assert len(failures) == 1 and failures[0].startswith("step training_dataset failed") and words in failures[0]
    assert promoted.store().current("training_dataset", D) == dataset_before
    assert state(promoted) == before


def test_unknown_algorithm_is_refused_by_the_config_schema_before_a_run_exists(promoted):
    before = state(promoted)
    runs_before = len(promoted.instance.get_run_records())
    config = deep_merge(LIGHT_RUN_CONFIG, {"ops": {"model_comparison": {"config": {"algorithms": ["xgboost"]}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="xgboost"):
        promoted.defs.resolve_job_def("refresh_job").execute_in_process(
            instance=promoted.instance, partition_key=D, run_config=config)
    assert len(promoted.instance.get_run_records()) == runs_before
    assert state(promoted) == before


@pytest.mark.parametrize("partition", ["2019-01-01", "2026-02-30", "../../etc"])
def test_a_partition_key_outside_the_partitions_definition_is_refused_before_a_run_exists(promoted, partition):
    runs_before = len(promoted.instance.get_run_records())
    with pytest.raises(dg.DagsterUnknownPartitionError, match=f"Could not find a partition with key `{partition}`"):
        promoted.defs.resolve_job_def("refresh_job").execute_in_process(
            instance=promoted.instance, partition_key=partition, run_config=LIGHT_RUN_CONFIG)
    assert len(promoted.instance.get_run_records()) == runs_before


def test_a_tampered_champion_file_is_refused_by_its_sha256_and_stays_champion(promoted):
    """A flipped byte in the registry's model file: scoring refuses to load it, nothing changes."""
    champion = promoted.registry().current_champion()
    model_file = Path(champion.model_path)
    original = model_file.read_bytes()
    before = state(promoted)
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    model_file.write_bytes(bytes(tampered))
    try:
        result = promoted.defs.resolve_job_def("scoring_job").execute_in_process(
            instance=promoted.instance, partition_key=D, raise_on_error=False)
        assert not result.success
        failures = failure_summary(promoted.instance, result.run_id)
        assert any(f.startswith("step production_scores failed") for f in failures), failures
        assert all(champion.model_sha256 in f and "sha256" in f.lower() for f in failures), failures
    finally:
        model_file.write_bytes(original)
    assert state(promoted) == before
    assert promoted.registry().current_champion().version == champion.version


@pytest.mark.parametrize("changed", ["one flipped bit", "a truncated file"])
def test_a_dataset_file_changed_after_its_commit_is_refused_by_every_reader(promoted, changed):
    """Scoring and drift read D's scoring population only after its sha256 matches its manifest (here run
    without the population step, so that they read the committed one the propagation run built)."""
    store = promoted.store()
    population_dir = store.current("scoring_population", D)
    target = population_dir / "scoring.parquet"
    original = target.read_bytes()
    before = state(promoted, downstream=(*DOWNSTREAM, "drift_report"))
    if changed == "one flipped bit":
        altered = bytearray(original)
        altered[len(altered) // 2] ^= 0x01
    else:
        altered = original[: len(original) - 100]
    target.write_bytes(bytes(altered))
    try:
        result = promoted.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=promoted.instance, partition_key=D, raise_on_error=False,
            asset_selection=[dg.AssetKey("production_scores"), dg.AssetKey("drift_report")])
    finally:
        target.write_bytes(original)
    assert not result.success
    failures = sorted(failure_summary(promoted.instance, result.run_id))
    assert [f.split(":")[0] for f in failures] == ["step drift_report failed", "step production_scores failed"]
    for failure in failures:
        assert f"{target} changed after it was committed" in failure and "refusing to read it" in failure
    assert state(promoted, downstream=(*DOWNSTREAM, "drift_report")) == before


@pytest.mark.parametrize("version, message", [
    (0, "rollback_job needs ops.champion_model.config.rollback_to_version"),
    (1, "v1 is already the champion: nothing to roll back"),
    (99, "model version 99 is not in the registry; known versions: [1]"),
])
def test_a_rollback_that_cannot_be_done_fails_in_one_line_and_changes_nothing(promoted, version, message):
    from refresh_assets.local_runs import rollback_run_config

    before = state(promoted)
    runs_before = len(promoted.instance.get_run_records())
    result = promoted.defs.resolve_job_def("rollback_job").execute_in_process(
        instance=promoted.instance, partition_key=D, run_config=rollback_run_config(version, "test"),
        raise_on_error=False)
    assert not result.success
    failures = failure_summary(promoted.instance, result.run_id)
    assert len(failures) == 1 and message in failures[0], failures
    assert state(promoted) == before
    assert len(promoted.instance.get_run_records()) == runs_before + 1  # no retry, nothing chained


@pytest.mark.parametrize("case, run_config, query, step, words", [
    ("named slice column not in the data", {"ops": {"model_comparison": {"config": {
        "slice_columns": ["platform", "region"]}}}}, None, "training_dataset_checks",
     "['region'] named in model_comparison's slice_columns are not in this dataset"),
    ("query file missing", None, "missing.sql", "training_dataset", "query script not found"),
])
def test_a_setting_that_does_not_fit_the_data_fails_before_training_and_is_not_retried(
        promoted, tmp_path, case, run_config, query, step, words):
    """The real refresh selection under a 2-retry step policy: the failing step runs once, no candidate starts,
    and the message names the setting (before: model_comparison failed after all four candidates had trained,
    and was retried twice with backoff)."""
    from refresh_assets.jobs import REFRESH_SELECTION

    before = state(promoted)
    resources = {"warehouse": Warehouse(location=promoted.defs.resources["warehouse"].location,
                                        query_path=str(tmp_path / query) if query else None),
                 "artifacts": ArtifactStore(root=str(promoted.outputs)),
                 "registry": Registry(root=str(promoted.root / "registry"))}
    job = dg.define_asset_job("retried_refresh", selection=REFRESH_SELECTION,
                              op_retry_policy=dg.RetryPolicy(max_retries=2), executor_def=dg.in_process_executor)
    defs = dg.Definitions(assets=build_defs().assets, asset_checks=build_defs().asset_checks, jobs=[job],
                          resources=resources)
    result = defs.resolve_job_def("retried_refresh").execute_in_process(
        instance=promoted.instance, partition_key=D, run_config=deep_merge(LIGHT_RUN_CONFIG, run_config),
        raise_on_error=False)
    assert not result.success
    events = [(e.event_type_value, e.step_key) for e in result.all_events]
    assert ("STEP_FAILURE", step) in events
    assert not [e for e in events if e[0] == "STEP_UP_FOR_RETRY"], events
    assert not [e for e in events if e[0] == "STEP_START" and e[1].startswith("candidate_")]
    (line,) = failure_summary(promoted.instance, result.run_id)
    assert words in line, line
    assert state(promoted) == before
