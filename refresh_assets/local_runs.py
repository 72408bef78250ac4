"""Run refreshes in this process on a Dagster instance, without a webserver or daemon.

Used by ``make run`` / ``refresh-assets refresh`` and by the integration tests. The chaining is the
promotion sensor's own: after a refresh, the sensor is evaluated on the same instance and the runs it
requests are executed, exactly as the daemon would launch them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from refresh_assets.progress import Progress

CURSOR_FILE = "local_sensor_cursors.json"
#: Run config that keeps Dagster's console logger to warnings: the CLI prints its own summary.
QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def deep_merge(base: dict | None, extra: dict | None) -> dict:
    """``extra`` laid over ``base``, nested dicts merged key by key (neither is changed): run config layers."""
    out = dict(base or {})
    for key, value in (extra or {}).items():
        current = out.get(key)
        out[key] = deep_merge(current if isinstance(current, dict) else None, value) if isinstance(value, dict) else value
    return out


def _with_loggers(run_config: dict | None, quiet: bool) -> dict | None:
    if not quiet:
        return run_config or None
    return {**(run_config or {}), **QUIET_LOGGERS}


def _execute(job, instance: dg.DagsterInstance, partition: str | None, progress: Progress | None,
             trigger: str | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    """``job.execute_in_process``; with ``progress``, under a run id made here so its watcher follows the run's
    steps while it runs (None: silent, as tests and benchmarks want)."""
    from refresh_assets.heap import freeze_startup_heap

    freeze_startup_heap()  # the first run of the process: what start-up loaded is out of the GC's way (heap.py)
    if progress is None:
        return job.execute_in_process(instance=instance, partition_key=partition, **kwargs)
    from refresh_assets.progress import new_run_id

    run_id = new_run_id()
    with progress.watch(instance, run_id, job.name, partition, trigger):
        return job.execute_in_process(instance=instance, partition_key=partition, run_id=run_id, **kwargs)


def embedded_instance(home: Path) -> dg.DagsterInstance:
    """A persistent instance with SQLite storage under ``home`` (what ``make ui`` shows afterwards), its storages
    keeping one Engine per SQLite file and checking their schema against migration scripts read once."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # the checkout's embedded instance (top-level dagster.yaml); a user's edits stay
        from refresh_assets.settings import EMBEDDED_INSTANCE_YAML

        config.write_text(EMBEDDED_INSTANCE_YAML.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    from refresh_assets.alembic_scripts import share_dagster_scripts
    from refresh_assets.sqlite_engines import keep_engines

    share_dagster_scripts()  # Dagster's migration scripts read once, not at every schema check (alembic_scripts.py)

    instance = dg.DagsterInstance.get()
    keep_engines(instance)  # one SQLAlchemy Engine per SQLite file, not one per query (sqlite_engines.py)
    return instance


@dataclass
class RefreshOutcome:
    partition: str
    run_id: str
    success: bool
    propagation_runs: list[tuple[str, str, bool]] = field(default_factory=list)  # (partition, run_id, success)
    drift_refresh_runs: list[tuple[str, str, bool]] = field(default_factory=list)  # what drift_sensor requested


def _load_cursor(instance: dg.DagsterInstance, sensor_name: str) -> str | None:
    path = Path(instance.root_directory) / CURSOR_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(sensor_name)


def _save_cursor(instance: dg.DagsterInstance, sensor_name: str, cursor: str | None) -> None:
    from refresh_assets.core.artifacts import atomic_write_json

    path = Path(instance.root_directory) / CURSOR_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data[sensor_name] = cursor
    atomic_write_json(path, data)


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str,
                raise_on_error: bool = True, quiet: bool = False,
                run_config: dict | None = None, progress: Progress | None = None) -> list[tuple[str, str, bool]]:
    """Evaluate one sensor on the instance, execute the runs it requests in process, keep its cursor.

    ``run_config`` gives the requested runs inputs the sensor leaves open (e.g. a smaller tuning budget), as a
    deployment's defaults would; whatever a request sets itself wins.
    """
    sensor_def = defs.resolve_sensor_def(sensor_name)
    context = dg.build_sensor_context(instance=instance, cursor=_load_cursor(instance, sensor_name),
                                      definitions=defs, sensor_name=sensor_name,
                                      resources=dict(defs.resources or {}))
    result = sensor_def(context)
    requests = list(result.run_requests or []) if isinstance(result, dg.SensorResult) else list(result or [])
    cursor = result.cursor if isinstance(result, dg.SensorResult) and result.cursor is not None else context.cursor
    done = []
    for request in requests:
        job_name = request.job_name or sensor_def.job_name
        job = defs.resolve_job_def(job_name)
        run = _execute(job, instance, request.partition_key, progress, trigger=sensor_name,
                       run_config=_with_loggers(deep_merge(run_config, request.run_config), quiet),
                       tags=dict(request.tags), raise_on_error=raise_on_error)
        done.append((request.partition_key, run.run_id, run.success))
    _save_cursor(instance, sensor_name, cursor)
    return done


def run_refresh(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str,
                run_config: dict | None = None, tags: dict | None = None,
                raise_on_error: bool = True, quiet: bool = False, job_name: str = "refresh_job",
                progress: Progress | None = None) -> RefreshOutcome:
    """Execute refresh_job (or ``job_name``, e.g. rollback_job) for one partition, then let the promotion sensor
    chain what it chains."""
    job = defs.resolve_job_def(job_name)
    result = _execute(job, instance, partition, progress, run_config=_with_loggers(run_config, quiet),
                      tags=tags, raise_on_error=raise_on_error)
    outcome = RefreshOutcome(partition, result.run_id, result.success)
    if result.success:
        outcome.propagation_runs = tick_sensor(defs, instance, "promotion_sensor", raise_on_error=raise_on_error,
                                               quiet=quiet, progress=progress)
    return outcome


def rollback_run_config(version: int, reason: str) -> dict:
    """The launchpad config of rollback_job: the version to make champion again, and why."""
    return {"ops": {"champion_model": {"config": {"rollback_to_version": int(version), "reason": reason}}}}


def run_scoring(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str,
                run_config: dict | None = None, raise_on_error: bool = True, quiet: bool = False,
                refresh_run_config: dict | None = None, progress: Progress | None = None) -> RefreshOutcome:
    """Execute scoring_job for one day, then let drift_sensor request its refresh (run here, with its own chained
    propagation) when the day's drift report found a new drift: the daily loop as the daemon runs it."""
    job = defs.resolve_job_def("scoring_job")
    result = _execute(job, instance, partition, progress, run_config=_with_loggers(run_config, quiet),
                      raise_on_error=raise_on_error)
    outcome = RefreshOutcome(partition, result.run_id, result.success)
    if result.success:
        outcome.drift_refresh_runs = tick_sensor(defs, instance, "drift_sensor", raise_on_error=raise_on_error,
                                                 quiet=quiet, run_config=refresh_run_config, progress=progress)
        if any(ok for *_, ok in outcome.drift_refresh_runs):
            outcome.propagation_runs = tick_sensor(defs, instance, "promotion_sensor",
                                                   raise_on_error=raise_on_error, quiet=quiet, progress=progress)
    return outcome


def latest_scored_partition(instance: dg.DagsterInstance) -> str | None:
    """The day production was last scored (the newest production_scores materialization), if any."""
    records = instance.fetch_materializations(dg.AssetKey("production_scores"), limit=1, ascending=False).records
    return records[0].partition_key if records else None


def failure_summary(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """One line per failed step of a run: the step and its error message (what a user needs first)."""
    lines = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        message = error.message.strip() if error else "unknown error"
        if error and error.cause is not None:
            message = error.cause.message.strip()
        lines.append(f"step {event.step_key} failed: {message}")
    return lines
