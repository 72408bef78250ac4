"""deploy/values.yaml (Dagster's Helm chart) and the Dockerfile agree with the code they deploy.

Helm is not installed here, so the chart is not rendered: the values file is parsed and each setting the
deployment depends on is checked against the code or the repo's production instance file (deploy/postgres/dagster.yaml).
"""

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((REPO / "deploy" / "values.yaml").read_text())


@pytest.fixture(scope="module")
def code_location(values) -> dict:
    deployments = values["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    return deployments[0]


def env_of(deployment: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in deployment["env"]}


def test_the_code_location_serves_the_definitions_module(values, code_location):
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert module == "refresh_assets.definitions"
    assert values["dagster-user-deployments"]["enabled"] is True
    assert code_location["dagsterApiGrpcArgs"] == ["-m", module]
    assert importlib.util.find_spec(module) is not None
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f'"-m", "{module}"' in dockerfile and f'"-p", "{code_location["port"]}"' in dockerfile
    assert f"EXPOSE {code_location['port']}" in dockerfile


def test_runs_use_the_k8s_run_launcher_and_steps_the_k8s_job_executor(values, code_location, monkeypatch):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in values["runLauncher"]["config"]
    assert code_location["includeConfigInLaunchedRuns"]["enabled"] is True
    executor_kind = env_of(code_location)["REFRESH_ASSETS_EXECUTOR"]
    monkeypatch.setenv("REFRESH_ASSETS_EXECUTOR", executor_kind)
    from dagster_k8s import k8s_job_executor

    from refresh_assets.executors import executor_from_env

    assert executor_from_env() is k8s_job_executor


def test_outputs_on_the_object_store_and_the_registry_on_the_mounted_volume(code_location):
    from refresh_assets.core.object_store import is_local

    env = env_of(code_location)
    assert not is_local(env["REFRESH_ASSETS_OUTPUTS"])
    assert env["REFRESH_ASSETS_WAREHOUSE"].startswith("s3://")
    mounts = {mount["mountPath"]: mount["name"] for mount in code_location["volumeMounts"]}
    volume = mounts[env["REFRESH_ASSETS_DATA_DIR"]]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in code_location["volumes"]}
    assert claims[volume] == "refresh-assets-registry"


def test_postgres_and_the_run_queue_match_the_repo_instance(values):
    instance = yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())
    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"]
    assert postgres["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["global"]["postgresqlSecretName"] and values["generatePostgresqlPasswordSecret"] is False

    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert queue["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    retries = values["dagsterDaemon"]["runRetries"]
    assert (retries["maxRetries"], retries["retryOnAssetOrOpFailure"]) == (
        instance["run_retries"]["max_retries"], instance["run_retries"]["retry_on_asset_or_op_failure"])
    assert values["dagsterDaemon"]["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True


def test_the_image_pins_s3fs_to_the_locked_fsspec(values):
    locked = re.search(r"^fsspec==(\S+)$", (REPO / "requirements.lock").read_text(), re.M).group(1)
    dagster = re.search(r"^dagster==(\S+)$", (REPO / "requirements.lock").read_text(), re.M).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"s3fs=={locked}" in dockerfile
    assert f"--version {dagster}" in (REPO / "deploy" / "values.yaml").read_text()
    assert f"--version {dagster}" in (REPO / "docs" / "DEPLOY.md").read_text()


def test_the_embedded_instance_needs_no_setting_and_shares_the_production_queue_and_retries():
    """`dagster dev` in the root reads the top-level dagster.yaml: no `{env: ...}` (an unset variable crashes
    it) and no storage block (SQLite under DAGSTER_HOME); queue, monitoring and retries as in production."""
    embedded_text = (REPO / "dagster.yaml").read_text()
    embedded = yaml.safe_load(embedded_text)
    production = yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())
    assert "env:" not in embedded_text.replace("# ", "") and "storage" not in embedded
    for section in ("concurrency", "run_monitoring", "run_retries"):
        assert embedded[section] == production[section], section
    assert production["run_retries"]["retry_on_asset_or_op_failure"] is False  # a failed step is not run again
    assert "postgres" in production["storage"]
