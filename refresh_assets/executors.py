"""Which executor runs a job's steps, chosen by the environment and overridable per run in run config.

``REFRESH_ASSETS_EXECUTOR`` picks the engine when the code location loads; the asset code never changes:

* ``in_process``: every step in the run's own process, one after the other (tests, debugging);
* ``multiprocess`` (default): one process per step on this machine, at most ``REFRESH_ASSETS_MAX_CONCURRENT``
  at once (default: the CPU count);
* ``celery``: each step is a Celery task on the queue ``REFRESH_ASSETS_CELERY_QUEUE`` (default ``dagster``)
  of the broker ``REFRESH_ASSETS_CELERY_BROKER``, run by whichever ``dagster-celery worker`` takes it;
* ``k8s``: each step is a Kubernetes Job (dagster-k8s ``k8s_job_executor``, see docs/DEPLOY.md).

The env var only sets defaults: a run can still pass ``execution: {config: {...}}`` (e.g. ``max_concurrent``,
``broker``, ``queue``). dagster_celery and dagster_k8s are imported only when selected, so loading the code
location stays as light as before. Workers must load the code with the same REFRESH_ASSETS_EXECUTOR: the run
config is validated against the executor's schema wherever a step runs.
"""

from __future__ import annotations

import os

import dagster as dg

from refresh_assets.import_order import MODEL_IO_MODULE

EXECUTOR_ENV = "REFRESH_ASSETS_EXECUTOR"
EXECUTOR_KINDS = ("in_process", "multiprocess", "celery", "k8s")
DEFAULT_EXECUTOR = "multiprocess"
DEFAULT_CELERY_BROKER = "pyamqp://guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND = "rpc://"
DEFAULT_CELERY_QUEUE = "dagster"


class ExecutorSettingError(ValueError):
    """An executor environment variable holds a value that cannot be used; the message names it."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ExecutorSettingError(f"{name} must be a whole number of processes, got {raw!r}") from None
    if value < 1:
        raise ExecutorSettingError(f"{name} must be at least 1, got {value}")
    return value


def selected_executor_kind() -> str:
    """The executor named by REFRESH_ASSETS_EXECUTOR (default multiprocess); an unknown name is refused."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower() or DEFAULT_EXECUTOR
    if kind not in EXECUTOR_KINDS:
        raise ExecutorSettingError(f"{EXECUTOR_ENV}={kind!r} is not an executor; choose one of {list(EXECUTOR_KINDS)}")
    return kind


#: Modules the forkserver imports once, so that each step process starts as a fork of a warm interpreter
#: instead of importing Dagster, pandas and scikit-learn again (seconds per step; see docs/BENCHMARKS.md).
#: Only imports happen in the forkserver, never model fitting, so no thread pool exists before a fork.
#: ``dagster._core.storage.sqlite_storage``: every step process opens the run's instance first, and importing
#: its storage (SQLAlchemy, Alembic, universal_pathlib) took 0.7-1.3 s per step when left to the step (12 steps
#: a refresh + propagation).
#: ``duckdb`` and ``refresh_assets.core.registry`` (9 of a refresh's 12 steps open the registry or the warehouse),
#: ``upath.core`` (what ``upath`` imports on first use: every step's instance and output store) and narwhals' pandas
#: layer (scikit-learn loads it at the first fit on a DataFrame, in every candidate step) and ``pyarrow.dataset`` took
#: 0.05-0.3 s in each step that used them (py-spy of a 600-player multiprocess refresh). A name missing from another
#: version is skipped (the forkserver ignores an ImportError of a preloaded module).
#: ``skops.io`` comes first: its import scans sys.modules once per SciPy ufunc, 0.35-0.45 s slower after Dagster's
#: modules (``import_order.py``).
#: ``refresh_assets.forkserver_heap`` comes last: it reads Dagster's migration scripts once (``alembic_scripts.py``)
#: and freezes what the others loaded (``heap.py``).
FORKSERVER_PRELOAD = (MODEL_IO_MODULE, "dagster", "refresh_assets.definitions", "pandas", "pyarrow.parquet",
                      "sklearn.pipeline", "sklearn.ensemble", "sklearn.linear_model", "dagster._core.storage.sqlite_storage",
                      "upath", "upath.core", "duckdb", "refresh_assets.core.registry", "pyarrow.dataset",
                      "narwhals.stable.v2", "narwhals._pandas_like.namespace", "refresh_assets.forkserver_heap")
START_METHODS = ("forkserver", "spawn")


def _checked_start(name: str) -> str:
    if name not in START_METHODS:
        raise ExecutorSettingError(f"start_method {name!r} is not one of {list(START_METHODS)}")
    return name


def _start_method(name: str) -> dict:
    if name == "forkserver":
        return {"forkserver": {"preload_modules": list(FORKSERVER_PRELOAD)}}
    return {"spawn": {}}


def multiprocess_executor_from_env() -> dg.ExecutorDefinition:
    """One process per step, capped so that steps (each fitting models on all its cores' worth) fit the machine;
    steps start from a forkserver with the heavy modules preloaded (REFRESH_ASSETS_START_METHOD=spawn: fresh
    interpreters, Dagster's default)."""
    default_limit = _env_int("REFRESH_ASSETS_MAX_CONCURRENT", os.cpu_count() or 1)
    default_start = os.environ.get("REFRESH_ASSETS_START_METHOD", "").strip().lower() or "forkserver"
    if default_start not in START_METHODS:
        raise ExecutorSettingError(
            f"REFRESH_ASSETS_START_METHOD={default_start!r} is not a start method; choose one of {list(START_METHODS)}")
    return dg.multiprocess_executor.configured(
        lambda config: {"max_concurrent": config["max_concurrent"],
                        "start_method": _start_method(_checked_start(config["start_method"]))},
        config_schema={
            "max_concurrent": dg.Field(
                int, default_value=default_limit,
                description="Steps running at once on this machine (REFRESH_ASSETS_MAX_CONCURRENT, default CPU count)."),
            "start_method": dg.Field(
                str, default_value=default_start,
                description="forkserver (default: steps fork from a process with the heavy modules preloaded) "
                            "or spawn (a fresh interpreter per step); REFRESH_ASSETS_START_METHOD."),
        },
    )


def celery_executor_from_env() -> dg.ExecutorDefinition:
    """Steps as Celery tasks; broker, result backend and queue default to REFRESH_ASSETS_CELERY_* values."""
    from dagster_celery import celery_executor

    def to_celery_config(config: dict) -> dict:
        return {
            "broker": config["broker"],
            "backend": config["backend"],
            # the dagster-celery executor sends each step to the app's default queue (or a step's
            # dagster-celery/queue tag): workers listen with `-q <queue>`
            "config_source": {**config["config_source"], "task_default_queue": config["queue"]},
        }

    return celery_executor.configured(
        to_celery_config,
        config_schema={
            "broker": dg.Field(dg.StringSource, default_value=os.environ.get("REFRESH_ASSETS_CELERY_BROKER") or DEFAULT_CELERY_BROKER,
                               description="Celery broker URL (REFRESH_ASSETS_CELERY_BROKER)."),
            "backend": dg.Field(dg.StringSource, default_value=os.environ.get("REFRESH_ASSETS_CELERY_BACKEND") or DEFAULT_CELERY_BACKEND,
                                description="Celery result backend URL (REFRESH_ASSETS_CELERY_BACKEND), e.g. rpc:// or redis://host:6379/0."),
            "queue": dg.Field(dg.StringSource, default_value=os.environ.get("REFRESH_ASSETS_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE,
                              description="Queue the steps are sent to; start workers with `-q <queue>` (REFRESH_ASSETS_CELERY_QUEUE)."),
            "config_source": dg.Field(dg.Permissive(), default_value={},
                                      description="Further Celery settings, as for dagster_celery's celery_executor."),
        },
    )


def k8s_executor() -> dg.ExecutorDefinition:
    """Each step in its own Kubernetes Job, in the image and namespace of the run (set by the Helm chart)."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


def executor_from_env() -> dg.ExecutorDefinition:
    """The executor REFRESH_ASSETS_EXECUTOR selects (see the module docstring)."""
    kind = selected_executor_kind()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        return celery_executor_from_env()
    if kind == "k8s":
        return k8s_executor()
    return multiprocess_executor_from_env()
