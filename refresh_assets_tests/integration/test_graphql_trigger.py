"""External triggers over GraphQL (refresh_assets.trigger) against a real dagster-webserver + dagster-daemon.

One webserver/daemon pair on a SQLite instance serves the whole module (starting them costs ~20 s):

* launch a refresh of D with run inputs overridden, wait for SUCCESS, and find the overrides in the manifest
  of D's model_comparison output (so the ``dagster/partition`` tag did pick the partition, and the run config
  reached the steps);
* cancel a started refresh of another date: the run ends CANCELED and the registry champion is unchanged;
* a run stuck STARTING (its worker never came up) is refused by a plain cancel with a hint, and ``cancel
  --force`` marks it CANCELED;
* the raw GraphQL body of ``RAW_GRAPHQL_EXAMPLE`` (what a non-Python system sends with curl) is accepted;
* refusals (unknown job, unknown partition, invalid config, unknown run) are clear errors.
"""

import json
import re
import time
import urllib.request
import uuid

import dagster as dg
import pytest

from refresh_assets import trigger
from refresh_assets.cli import main as cli_main
from refresh_assets.cli import run_config_from_sets
from refresh_assets.config import ConfigError
from refresh_assets.core.artifacts import OutputStore
from refresh_assets.core.registry import ModelRegistry
from refresh_assets.local_runs import deep_merge
from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG, PRE_DRIFT
from refresh_assets_tests.integration.dagster_processes import (
    dagster_processes,
    describe_runs,
    end_every_run,
    project_env,
    wait_for,
    write_instance_yaml,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
FIRST, SECOND = PRE_DRIFT  # 2026-04-06, 2026-04-13
OVERRIDES = ["random_seed=7", "min_improvement=0.001"]
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory, drift_warehouse):
    """(port, data folder, instance) of a running webserver + daemon on a fresh SQLite instance."""
    root = tmp_path_factory.mktemp("graphql_trigger")
    home, data = root / "home", root / "data"
    write_instance_yaml(home, storage={"sqlite": {"base_dir": str(home / "storage")}})
    env = project_env(home, data, drift_warehouse)
    with dg.DagsterInstance.from_config(str(home)) as instance, \
            dagster_processes(env, root / "logs") as port:
        yield port, data, instance
        end_every_run(instance, port, root / "logs", timeout=300)  # the promotion sensor chains a propagation run


@pytest.fixture(scope="module")
def first_refresh(server):
    """The refresh of FIRST, launched with LIGHT_RUN_CONFIG plus OVERRIDES, waited for."""
    port, data, instance = server
    overrides, _ = run_config_from_sets(OVERRIDES)
    run_config = deep_merge(LIGHT_RUN_CONFIG, overrides)
    t0 = time.perf_counter()
    run_id = trigger.launch(HOST, port, "refresh_job", FIRST, run_config, {"refresh_assets/trigger": "test"})
    status = trigger.wait(HOST, port, run_id, timeout=RUN_TIMEOUT)
    print(f"\nrefresh {FIRST} over GraphQL: {status} in {time.perf_counter() - t0:.0f}s")
    return run_id, status


def test_launch_with_partition_and_overrides(server, first_refresh):
    port, data, instance = server
    run_id, status = first_refresh
    assert status == "SUCCESS", f"run {run_id} ended {status}; see the logs beside the instance"

    run = instance.get_run_by_id(run_id)
    assert run.job_name == "refresh_job"
    assert run.tags["dagster/partition"] == FIRST
    assert run.tags["refresh_assets/trigger"] == "test"
    assert run.tags["refresh_assets/kind"] == "refresh"  # the job's own tags still apply (queue limits)

    # the partition tag picked the partition: D's outputs were written by this run, with the overrides
    comparison = OutputStore(data / "outputs").current("model_comparison", FIRST)
    assert comparison is not None
    pointer = json.loads((comparison.parent / "current.json").read_text())
    assert (comparison.parent / pointer["run_dir"]) == comparison
    manifest = json.loads((comparison / "manifest.json").read_text())
    assert manifest["run_id"] == run_id and manifest["partition"] == FIRST
    assert manifest["config"]["min_improvement"] == 0.001
    assert manifest["config"]["random_seed"] == 7
    assert manifest["config"]["bootstrap_samples"] == 200  # LIGHT_RUN_CONFIG kept beside the overrides
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_model"), asset_partitions=[FIRST]), limit=1
    ).records[0]
    assert record.run_id == run_id


def test_cancel_a_started_refresh_leaves_the_champion_alone(server, first_refresh):
    port, data, instance = server
    registry = ModelRegistry(data / "registry")
    before = registry.current_champion()
    assert before is not None and before.partition_key == FIRST  # the first refresh promoted a first champion

    run_id = trigger.launch(HOST, port, "refresh_job", SECOND, LIGHT_RUN_CONFIG)
    wait_for(lambda: trigger.status(HOST, port, run_id) in ("STARTED", *trigger.TERMINAL_STATUSES),
             timeout=180, interval=0.5, what="the second refresh to start")
    assert trigger.status(HOST, port, run_id) == "STARTED"
    t0 = time.perf_counter()
    trigger.cancel(HOST, port, run_id)
    assert trigger.wait(HOST, port, run_id, timeout=120, poll=0.5) == "CANCELED"
    print(f"\ncanceled a started refresh in {time.perf_counter() - t0:.1f}s")

    after = registry.current_champion()
    assert (after.version, after.partition_key) == (before.version, before.partition_key)
    assert not any(e.run_id == run_id for e in registry.events())
    assert OutputStore(data / "outputs").current("champion_model", SECOND) is None

    with pytest.raises(trigger.TriggerError, match="could not be terminated"):
        trigger.cancel(HOST, port, run_id)  # already ended


def test_a_run_stuck_starting_is_refused_by_cancel_and_marked_canceled_by_force(server, capsys):
    """What the daemon leaves when a launched run's worker never reports: status STARTING with a launch
    event (PIPELINE_STARTING), and no process. Dagster will not terminate it safely; --force ends it."""
    port, data, instance = server
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="propagation_job", run_id=run_id, status=dg.DagsterRunStatus.NOT_STARTED,
                                   tags={"dagster/partition": FIRST}))
    instance.report_dagster_event(dg.DagsterEvent(event_type_value="PIPELINE_STARTING", job_name="propagation_job"),
                                  run_id=run_id)
    assert trigger.status(HOST, port, run_id) == "STARTING"
    # what a teardown that finds it still in flight prints (dagster_processes.end_every_run)
    described = describe_runs(instance, instance.get_run_records(dg.RunsFilter(run_ids=[run_id])))
    assert described.startswith(f"run {run_id[:8]} propagation_job {FIRST} STARTING, created ")
    assert "PIPELINE_STARTING" in described

    with pytest.raises(trigger.TriggerError, match=r"status STARTING.*retry in a few seconds, or force the cancel"):
        trigger.cancel(HOST, port, run_id)
    assert cli_main(["cancel", run_id, "--force", "--host", HOST, "--port", str(port)]) == 0
    assert capsys.readouterr().out.strip() == f"run {run_id}: marked CANCELED"
    assert trigger.status(HOST, port, run_id) == "CANCELED"
    with pytest.raises(trigger.TriggerError, match="forced cancel of run .*could not be terminated"):
        trigger.cancel(HOST, port, run_id, force=True)  # already ended


def raw_example_body() -> bytes:
    """The JSON body of the curl command in RAW_GRAPHQL_EXAMPLE, exactly as curl would send it."""
    match = re.search(r"-d '(.*)'\s*$", trigger.RAW_GRAPHQL_EXAMPLE, re.S)
    assert match, trigger.RAW_GRAPHQL_EXAMPLE
    return match.group(1).encode()


def test_raw_graphql_example_launches_a_run(server, first_refresh):
    port, data, instance = server
    body = raw_example_body()
    json.loads(body)  # valid JSON
    url = re.search(r"(https?://\S+/graphql)", trigger.RAW_GRAPHQL_EXAMPLE).group(1)
    assert url == "http://localhost:3000/graphql"
    headers = dict(re.findall(r"-H '([^:]+): ([^']+)'", trigger.RAW_GRAPHQL_EXAMPLE))
    request = urllib.request.Request(f"http://{HOST}:{port}/graphql", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    result = answer["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", answer
    run_id = result["run"]["runId"]
    trigger.cancel(HOST, port, run_id)  # accepted is enough: no need to spend a refresh on it
    assert trigger.wait(HOST, port, run_id, timeout=120, poll=0.5) == "CANCELED"
    run = instance.get_run_by_id(run_id)
    assert run.job_name == "refresh_job" and run.tags["dagster/partition"] == "2026-04-06"
    assert run.run_config == {"ops": {"model_comparison": {"config": {"min_improvement": 0.001}}}}


def test_refusals_are_clear(server):
    port, data, instance = server
    with pytest.raises(trigger.TriggerError, match=r"no job 'nope_job'.*propagation_job, refresh_job, rollback_job, scoring_job"):
        trigger.launch(HOST, port, "nope_job", FIRST, {})
    with pytest.raises(trigger.TriggerError, match="'2099-01-01' is not a partition of refresh_job"):
        trigger.launch(HOST, port, "refresh_job", "2099-01-01", {})
    # the server's partitions decide (it may start them elsewhere than this process): an earlier date names the
    # server's variable that moves them
    with pytest.raises(trigger.TriggerError, match=r"'2019-06-30' is not a partition of refresh_job \(partitions: "
                                                   r"2025-01-01 .*REFRESH_ASSETS_PARTITION_START=2019-06-01"):
        trigger.launch(HOST, port, "refresh_job", "2019-06-30", {})
    with pytest.raises(trigger.TriggerError, match="refresh_job is partitioned"):
        trigger.launch(HOST, port, "refresh_job", None, {})
    with pytest.raises(ConfigError, match="min_improvement"):
        trigger.launch(HOST, port, "refresh_job", FIRST, {"ops": {"model_comparison": {"config": {"min_improvement": 9}}}})
    with pytest.raises(trigger.TriggerError, match="RunConfigValidationInvalid.*bogus"):  # the server's own check
        trigger.launch(HOST, port, "refresh_job", FIRST, {"ops": {"model_comparison": {"config": {"bogus": 1}}}},
                       validate=False)
    with pytest.raises(trigger.TriggerError, match="RunNotFoundError"):
        trigger.wait(HOST, port, "00000000-0000-0000-0000-000000000000", timeout=5)
    with pytest.raises(trigger.TriggerError, match="ConnectionError: .*cannot reach the webserver"):
        trigger.launch(HOST, 1, "refresh_job", FIRST, {})
    assert all(r.tags.get("dagster/partition") != "2099-01-01" for r in instance.get_runs())
