"""Every CLI command ends a known failure with one line (what, where, what to do) and a non-zero exit code; the
traceback only with --verbose."""

import pytest

from refresh_assets import cli
from refresh_assets.core.registry import ModelRegistry, RegistryDamagedError

VARIABLES = ("REFRESH_ASSETS_DATA_DIR", "REFRESH_ASSETS_WAREHOUSE", "REFRESH_ASSETS_QUERY",
             "REFRESH_ASSETS_PARTITION_START", "DAGSTER_HOME")


@pytest.fixture(autouse=True)
def restored_environment(monkeypatch):
    """cli.main exports its flags as variables (as a fresh process would): undo them after each test."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def damage_registry(data_dir):
    ModelRegistry(data_dir / "registry")  # a real, empty history
    db = data_dir / "registry" / "registry.duckdb"
    with open(db, "r+b") as handle:
        handle.truncate(4096)
    return db


def test_a_damaged_registry_says_so_in_one_line_naming_the_file_and_the_way_back(tmp_path, capsys):
    db = damage_registry(tmp_path)
    code, out, err = run(capsys, "--data-dir", str(tmp_path), "champion")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"the registry file {db} is damaged" in err and f"mv {db} {db}.damaged" in err


def test_verbose_shows_the_traceback(tmp_path, capsys):
    damage_registry(tmp_path)
    with pytest.raises(RegistryDamagedError):
        cli.main(["--verbose", "--data-dir", str(tmp_path), "champion"])


def test_a_refresh_date_before_the_first_partition_names_the_range_and_the_variable(tmp_path, capsys):
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "refresh", "--partition", "2019-06-30")
    assert code == 2 and err.count("\n") == 1
    assert "partition 2019-06-30 is before the first partition 2025-01-01" in err
    assert "REFRESH_ASSETS_PARTITION_START=2019-06-01" in err and "--partition-start" in err


@pytest.mark.parametrize("flags, words", [
    (["--query", "no/such/query.sql"], "--query no/such/query.sql: no such file"),
    (["--warehouse", "no/such/warehouse.duckdb"], "--warehouse no/such/warehouse.duckdb: no such file or folder"),
    (["--partition-start", "2019/01/01"], "--partition-start must be a date YYYY-MM-DD, got '2019/01/01'"),
])
def test_a_data_source_flag_that_cannot_work_is_refused_before_anything_runs(tmp_path, capsys, flags, words):
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "refresh", "--partition", "2026-07-05", *flags)
    assert code == 2 and err.startswith(f"error: {words}") and err.count("\n") == 1


def test_the_data_source_flags_reach_the_code_location_as_its_variables(tmp_path, capsys, monkeypatch):
    import os

    query = tmp_path / "mine.sql"
    query.write_text("SELECT 1")
    (tmp_path / "raw").mkdir()
    seen = {}
    monkeypatch.setattr(cli, "cmd_refresh", lambda args: seen.update(
        {name: os.environ.get(name) for name in VARIABLES[1:4]}) or 0)
    assert cli.main(["refresh", "--partition", "2019-06-30", "--warehouse", str(tmp_path / "raw"),
                     "--query", str(query), "--partition-start", "2016-01-01"]) == 0
    assert seen == {"REFRESH_ASSETS_WAREHOUSE": str(tmp_path / "raw"), "REFRESH_ASSETS_QUERY": str(query),
                    "REFRESH_ASSETS_PARTITION_START": "2016-01-01"}


def test_an_unexpected_error_is_one_line_with_the_hint_and_exit_1(tmp_path, capsys, monkeypatch):
    def broken(_as_json):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "champion_report", broken)
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "champion")
    assert code == 1
    assert err == "error: RuntimeError: boom (unexpected; rerun with --verbose to see where)\n"


def test_trigger_sends_warehouse_and_query_as_the_runs_resource_config(tmp_path, capsys, monkeypatch):
    """`trigger --warehouse --query`: the launched run's warehouse resource (the launchpad's
    resources.warehouse.config), with absolute paths, and the job's config schema accepts it."""
    import dagster as dg

    from refresh_assets import trigger
    from refresh_assets.definitions import defs

    query = tmp_path / "mine.sql"
    query.write_text("SELECT 1")
    (tmp_path / "shop").mkdir()
    sent = {}
    monkeypatch.setattr(trigger, "launch", lambda host, port, job, partition, run_config, tags:
                        sent.update(run_config=run_config) or "run-1")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["trigger", "--partition", "2026-07-05", "--warehouse", "shop", "--query", "mine.sql",
                     "--set", "tuning_budget=1"]) == 0
    resources = sent["run_config"]["resources"]
    assert resources == {"warehouse": {"config": {"location": str(tmp_path / "shop"), "query_path": str(query)}}}
    assert dg.validate_run_config(defs.resolve_job_def("refresh_job"), sent["run_config"])
