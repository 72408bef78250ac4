"""Executor selection: REFRESH_ASSETS_EXECUTOR picks the engine, its variables set defaults, run config overrides.

Each test builds the executor object Dagster would build for a run (the executor definition's creation
function on the resolved run config), so the values asserted are the ones the run would use.
"""

import os

import dagster as dg
import pytest
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.executor.init import InitExecutorContext
from dagster._core.system_config.objects import ResolvedRunConfig

from refresh_assets.executors import ExecutorSettingError, executor_from_env

EXECUTOR_VARIABLES = ("REFRESH_ASSETS_EXECUTOR", "REFRESH_ASSETS_MAX_CONCURRENT", "REFRESH_ASSETS_START_METHOD",
                      "REFRESH_ASSETS_CELERY_BROKER",
                      "REFRESH_ASSETS_CELERY_BACKEND", "REFRESH_ASSETS_CELERY_QUEUE")


@pytest.fixture(autouse=True)
def clean_executor_env(monkeypatch):
    for name in EXECUTOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dg.op
def noop():
    return None


def executor_for_run(run_config: dict | None = None, job=None):
    """The executor a run of ``job`` gets (default: a one-op job with the executor the environment selects)."""
    job = job or dg.GraphDefinition(name="one_op", node_defs=[noop]).to_job(executor_def=executor_from_env())
    resolved = ResolvedRunConfig.build(job, run_config or {})
    with dg.DagsterInstance.ephemeral() as instance:
        return job.executor_def.executor_creation_fn(InitExecutorContext(
            job=InMemoryJob(job), executor_def=job.executor_def,
            executor_config=resolved.execution.execution_engine_config, instance=instance))


def test_default_is_multiprocess_limited_to_the_cpu_count():
    executor = executor_for_run()
    assert type(executor).__name__ == "MultiprocessExecutor"
    assert executor._max_concurrent == os.cpu_count()


def test_concurrency_limit_from_env_and_run_config(monkeypatch):
    monkeypatch.setenv("REFRESH_ASSETS_MAX_CONCURRENT", "3")
    assert executor_for_run()._max_concurrent == 3
    assert executor_for_run({"execution": {"config": {"max_concurrent": 1}}})._max_concurrent == 1


def test_steps_fork_from_a_preloaded_forkserver_by_default(monkeypatch):
    executor = executor_for_run()
    assert executor._start_method == "forkserver"
    assert {"dagster", "refresh_assets.definitions", "sklearn.ensemble"} <= set(executor._explicit_forkserver_preload)
    monkeypatch.setenv("REFRESH_ASSETS_START_METHOD", "spawn")
    assert executor_for_run()._start_method == "spawn"
    assert executor_for_run({"execution": {"config": {"start_method": "forkserver"}}})._start_method == "forkserver"
    monkeypatch.setenv("REFRESH_ASSETS_START_METHOD", "fork")
    with pytest.raises(ExecutorSettingError, match="REFRESH_ASSETS_START_METHOD='fork'"):
        executor_from_env()


def test_in_process(monkeypatch):
    monkeypatch.setenv("REFRESH_ASSETS_EXECUTOR", "in_process")
    assert type(executor_for_run()).__name__ == "InProcessExecutor"


def test_celery_broker_backend_and_queue_from_env_then_run_config(monkeypatch):
    monkeypatch.setenv("REFRESH_ASSETS_EXECUTOR", "celery")
    executor = executor_for_run()
    assert (executor.broker, executor.backend) == ("pyamqp://guest@127.0.0.1:5672//", "rpc://")
    assert executor.config_source.task_default_queue == "dagster"

    monkeypatch.setenv("REFRESH_ASSETS_CELERY_BROKER", "redis://127.0.0.1:6379/1")
    monkeypatch.setenv("REFRESH_ASSETS_CELERY_BACKEND", "redis://127.0.0.1:6379/2")
    monkeypatch.setenv("REFRESH_ASSETS_CELERY_QUEUE", "churn")
    executor = executor_for_run()
    assert (executor.broker, executor.backend) == ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/2")
    assert executor.config_source.task_default_queue == "churn"

    executor = executor_for_run({"execution": {"config": {
        "queue": "big", "broker": "pyamqp://guest@rabbit:5672//", "config_source": {"worker_prefetch_multiplier": 2}}}})
    assert executor.broker == "pyamqp://guest@rabbit:5672//"
    assert executor.config_source.task_default_queue == "big"
    assert executor.config_source.worker_prefetch_multiplier == 2


def test_k8s_selects_dagster_k8s_job_executor(monkeypatch):
    monkeypatch.setenv("REFRESH_ASSETS_EXECUTOR", "k8s")
    from dagster_k8s import k8s_job_executor

    assert executor_from_env() is k8s_job_executor


@pytest.mark.parametrize(("name", "value", "message"), [
    ("REFRESH_ASSETS_EXECUTOR", "spark", "REFRESH_ASSETS_EXECUTOR='spark' is not an executor"),
    ("REFRESH_ASSETS_MAX_CONCURRENT", "many", "REFRESH_ASSETS_MAX_CONCURRENT must be a whole number"),
    ("REFRESH_ASSETS_MAX_CONCURRENT", "0", "REFRESH_ASSETS_MAX_CONCURRENT must be at least 1"),
])
def test_bad_settings_are_refused_by_name(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ExecutorSettingError, match=message):
        executor_from_env()


def test_the_jobs_use_the_selected_executor():
    from refresh_assets.definitions import defs

    for job_name in ("refresh_job", "propagation_job", "scoring_job"):
        assert defs.resolve_job_def(job_name).executor_def.name == "multiprocess"


def test_backfills_and_ui_materializations_get_the_selected_executor_too(monkeypatch):
    """An asset backfill (or "Materialize" in the UI) runs the implicit asset job, not refresh_job: without the
    Definitions-level executor its steps got Dagster's default, a freshly spawned interpreter per step."""
    from refresh_assets.definitions import build_defs

    implicit = build_defs().resolve_implicit_global_asset_job_def()
    executor = executor_for_run(job=implicit)
    assert type(executor).__name__ == "MultiprocessExecutor" and executor._start_method == "forkserver"
    monkeypatch.setenv("REFRESH_ASSETS_EXECUTOR", "in_process")
    implicit = build_defs().resolve_implicit_global_asset_job_def()
    assert type(executor_for_run(job=implicit)).__name__ == "InProcessExecutor"
