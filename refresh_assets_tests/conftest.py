"""Shared fixtures: a small seeded simulation with concept drift, and a project wired to temporary folders."""

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Steps fail fast in tests; tests of retries set their own policy explicitly.
os.environ.setdefault("REFRESH_ASSETS_RETRY_MAX", "0")
# The real-time scorer's latency bar in tests: correctness is what they check, on a loaded 2-core machine with four
# test workers; the 10 ms bar itself is measured by the realtime_latency benchmark (make bench).
os.environ.setdefault("REFRESH_ASSETS_REALTIME_P99_MS", "2000")
# Building and proving the real-time scorer costs 15-45 s per propagation on a loaded machine: on only where it is
# what is tested (test_refresh_pipeline's scenario, test_serving_*); every other propagation records it as off.
os.environ.setdefault("REFRESH_ASSETS_REALTIME", "off")

SIM_START = dt.date(2026, 1, 5)
DRIFT_DATE = dt.date(2026, 4, 20)
PRE_DRIFT = ("2026-04-06", "2026-04-13")  # two refreshes before the change
POST_DRIFT = "2026-07-05"  # the last simulated day: training and holdout after the change

CANDIDATES = ("logreg", "random_forest", "hist_gb", "ensemble")


def _run_config(tuning_budget: int, max_training_rows: int, importance_rows: int, bootstrap_samples: int) -> dict:
    training = {"tuning_budget": tuning_budget, "cv_splits": 2, "max_training_rows": max_training_rows,
                "importance_rows": importance_rows}
    return {"ops": {**{f"candidate_{a}": {"config": dict(training)} for a in CANDIDATES},
                    "model_comparison": {"config": {"bootstrap_samples": bootstrap_samples}}}}


#: A small tuning budget keeps an integration refresh to seconds; the defaults are what users run. For tests
#: whose decisions depend on model quality (a promotion after the concept drift, none without it).
FAST_RUN_CONFIG = _run_config(tuning_budget=1, max_training_rows=6000, importance_rows=500, bootstrap_samples=400)
#: For tests of orchestration (queues, retries, daemons, executors, kills), where only that the steps ran and what
#: they left behind matters: one parameter set, 2,000 rows and no permutation importances (half of a small
#: candidate step's time).
LIGHT_RUN_CONFIG = _run_config(tuning_budget=1, max_training_rows=2000, importance_rows=0, bootstrap_samples=200)


#: Modules by how long they hold a worker (longest first, measured with `make test`'s 6 workers on 2 cores on
#: 2026-12-04). `make test` hands whole modules to xdist workers in this order (--dist loadfile
#: --no-loadscope-reorder): the long ones start at once and the many short unit modules fill the gaps at the end.
#: Sorted by test count instead (xdist's default) the one-test modules (a daemon backfill, the benchmark smoke
#: run) came last and ran alone for minutes.
SLOWEST_MODULES = ("test_benchmark_suite", "test_refresh_pipeline", "test_postgres_ops", "test_daily_loop_daemon",
                   "test_drift_pipeline", "test_backfill_daemon", "test_bad_inputs", "test_daily_loop_cli",
                   "test_faults", "test_serving_http", "test_decision_study", "test_schedule_race",
                   "test_example_domain", "test_models", "test_celery_executor", "test_graphql_trigger",
                   "test_charts", "test_postgres_restart", "test_registry_journal", "test_code_location",
                   "test_web_ui")


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: order within a module is kept


@pytest.fixture(scope="session")
def drift_warehouse(tmp_path_factory) -> Path:
    """4,000 players over 182 days (plus warm-up); from DRIFT_DATE the churn relation changes (concept drift
    1.0) and 60% of new installs come from a new channel that behaves differently (covariate drift 0.6)."""
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    path = tmp_path_factory.mktemp("warehouse") / "raw.duckdb"
    simulate_to_duckdb(SimulationConfig(n_players=4000, days=182, start_date=SIM_START, seed=7,
                                        drift_date=DRIFT_DATE, concept_drift=1.0, covariate_drift=0.6), path)
    return path


@dataclass
class Project:
    root: Path
    defs: object
    instance: object

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    def registry(self):
        from refresh_assets.core.registry import ModelRegistry

        return ModelRegistry(self.root / "registry")

    def store(self):
        from refresh_assets.core.artifacts import OutputStore

        return OutputStore(self.outputs)


def make_project(root: Path, warehouse: Path) -> Project:
    import dagster as dg

    from refresh_assets.definitions import build_defs
    from refresh_assets.resources import ArtifactStore, Registry, Warehouse

    defs = build_defs({
        "warehouse": Warehouse(location=str(warehouse)),
        "artifacts": ArtifactStore(root=str(root / "outputs")),
        "registry": Registry(root=str(root / "registry")),
    })
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=str(root / "dagster_home"))
    return Project(root, defs, instance)


@pytest.fixture
def project(tmp_path, drift_warehouse) -> Project:
    p = make_project(tmp_path, drift_warehouse)
    yield p
    p.instance.dispose()


@pytest.fixture(scope="session")
def promoted_project(tmp_path_factory, drift_warehouse) -> Project:
    """A project whose first refresh of PRE_DRIFT[0] promoted champion v1 and scored it: the starting state the
    bad-input and fault tests must leave untouched. Shared by the modules a worker runs (one refresh)."""
    from refresh_assets.local_runs import run_refresh

    project = make_project(tmp_path_factory.mktemp("promoted"), drift_warehouse)
    first = run_refresh(project.defs, project.instance, PRE_DRIFT[0], LIGHT_RUN_CONFIG)
    assert first.success and project.registry().current_champion().version == 1
    assert [ok for _, _, ok in first.propagation_runs] == [True]
    yield project
    project.instance.dispose()
