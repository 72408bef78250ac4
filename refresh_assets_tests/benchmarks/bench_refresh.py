"""A full refresh of one partition with Dagster, against the same work as a plain Python script.

Full refresh = refresh_job (dataset -> four candidates -> comparison -> champion) and the propagation the
promotion sensor chains (shadow test -> production scores). Three ways, each in a fresh process with an
empty data folder, on the same simulated warehouse, in rotating order within each repeat so that machine
noise hits them alike:

- ``script``: ``plain_refresh.py`` (same core functions, same settings, same files written);
- ``inprocess``: ``execute_in_process`` on a SQLite instance (what ``make run`` and the CLI do);
- ``multiprocess``: ``execute_job`` with Dagster's multiprocess executor (what the daemon launches).

Wall time is taken around the child process (interpreter start and imports included for all three). Peak
memory is the in-process run's maximum resident set size (the whole refresh in one process).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from refresh_assets.heap import collection_paused_until_first_run
from refresh_assets_tests.benchmarks.common import REPO, Row, log, python, with_stats

MODES = ("script", "inprocess", "multiprocess")
TARGETS = {"inprocess": 1.15, "multiprocess": 1.3}
MEMORY_TARGET_GIB = 4.0


def settings_for(budget: int | None) -> dict[str, Any]:
    """The launchpad defaults (or, for the quick sizes, a smaller tuning budget and no permutation importances:
    a sanity check, not the targets' workload), for all three modes."""
    from refresh_assets.config import ComparisonConfig, ScoringConfig, TrainingConfig

    training = TrainingConfig().model_dump(mode="json")
    comparison = ComparisonConfig().model_dump(mode="json")
    comparison["algorithms"] = [getattr(a, "value", a) for a in comparison["algorithms"]]
    if budget is not None:
        training.update(tuning_budget=budget, cv_splits=2, importance_rows=0)
        comparison.update(bootstrap_samples=200)
    return {"training": training, "comparison": comparison, "scoring": ScoringConfig().model_dump(mode="json")}


def run_config_for(settings: dict[str, Any]) -> dict[str, Any]:
    ops = {f"candidate_{a}": {"config": settings["training"]}
           for a in ("logreg", "random_forest", "hist_gb", "ensemble")}
    ops["model_comparison"] = {"config": settings["comparison"]}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# ---------------------------------------------------------------------------------------------------------
# The child process
# ---------------------------------------------------------------------------------------------------------


def _refresh_job():
    from refresh_assets.definitions import defs

    return defs.resolve_job_def("refresh_job")


def _propagation_job():
    from refresh_assets.definitions import defs

    return defs.resolve_job_def("propagation_job")


def _multiprocess(instance, partition: str, run_config: dict) -> None:
    import dagster as dg

    from refresh_assets.sensors import propagation_requests

    execution = {"execution": {"config": {"max_concurrent": os.cpu_count() or 2}}}
    tags = {"dagster/partition": partition}
    result = dg.execute_job(dg.reconstructable(_refresh_job), instance=instance,
                            run_config={**run_config, **execution}, tags=tags)
    if not result.success:
        raise RuntimeError(f"refresh_job failed in the multiprocess run {result.run_id}")
    requests, _ = propagation_requests(instance, None)
    for request in requests:
        propagation = dg.execute_job(
            dg.reconstructable(_propagation_job), instance=instance, tags={**tags, **request.tags},
            run_config={"loggers": run_config["loggers"], **execution})
        if not propagation.success:
            raise RuntimeError(f"propagation_job failed in the multiprocess run {propagation.run_id}")


@collection_paused_until_first_run()  # as `refresh-assets refresh` does (cli.py): no collection during start-up
def _inprocess(workdir: Path, partition: str, run_config: dict) -> None:
    from refresh_assets.import_order import model_io_before_dagster

    model_io_before_dagster()  # as `refresh-assets refresh` does (cli.py)
    from refresh_assets.definitions import defs
    from refresh_assets.local_runs import embedded_instance, run_refresh

    instance = embedded_instance(workdir / "dagster_home")
    outcome = run_refresh(defs, instance, partition, run_config, quiet=True)
    if not outcome.success or not all(ok for *_, ok in outcome.propagation_runs):
        raise RuntimeError(f"in-process refresh failed: run {outcome.run_id}")


def child(args: dict[str, Any]) -> dict[str, Any]:
    """One refresh in this (fresh) process; returns what it did and its peak memory."""
    import resource

    mode, workdir, partition = args["mode"], Path(args["workdir"]), args["partition"]
    if mode == "script":
        from refresh_assets_tests.benchmarks.plain_refresh import plain_refresh

        done = plain_refresh(args["warehouse"], workdir, partition, args["settings"])
    else:
        os.environ["REFRESH_ASSETS_DATA_DIR"] = str(workdir)
        os.environ["REFRESH_ASSETS_WAREHOUSE"] = str(args["warehouse"])
        # the jobs' executor comes from the environment when the code location loads (refresh_assets/executors.py)
        os.environ["REFRESH_ASSETS_EXECUTOR"] = "multiprocess"
        if mode == "inprocess":
            _inprocess(workdir, partition, run_config_for(args["settings"]))
        else:
            from refresh_assets.local_runs import embedded_instance

            _multiprocess(embedded_instance(workdir / "dagster_home"), partition, run_config_for(args["settings"]))
        from refresh_assets.core.registry import ModelRegistry

        champion = ModelRegistry(workdir / "registry").current_champion()
        done = {"promoted": champion.algorithm if champion else None}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {**done, "peak_rss_gib": own, "largest_child_rss_gib": children}


# ---------------------------------------------------------------------------------------------------------
# The parent
# ---------------------------------------------------------------------------------------------------------


def _one(mode: str, warehouse: Path, partition: str, settings: dict, root: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{mode}_", dir=root))
    payload = json.dumps({"mode": mode, "warehouse": str(warehouse), "workdir": str(workdir),
                          "partition": partition, "settings": settings})
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run([python(), "-m", "refresh_assets_tests.benchmarks.bench_refresh", payload],
                          cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} refresh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return {"seconds": seconds, **json.loads(proc.stdout.strip().splitlines()[-1])}


def run(size: dict) -> list[Row]:
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    settings = settings_for(size["refresh_budget"])
    cfg = SimulationConfig(n_players=size["refresh_players"], seed=17)
    partition = str(cfg.end_date())
    with tempfile.TemporaryDirectory(prefix="bench_refresh_") as tmp:
        root = Path(tmp)
        warehouse = root / "raw.duckdb"
        summary = simulate_to_duckdb(cfg, warehouse)
        log(f"refresh: simulated {summary['players']:,} players, {summary['session_rows']:,} session rows "
            f"({cfg.n_players:,} installing in the window); partition {partition}")
        repeats: list[dict[str, dict]] = []
        for i in range(size["refresh_repeats"]):
            order = MODES[i % 3:] + MODES[:i % 3]
            done = {}
            for mode in order:
                done[mode] = _one(mode, warehouse, partition, settings, root)
                log(f"refresh repeat {i + 1}: {mode} {done[mode]['seconds']:.1f}s, "
                    f"peak {done[mode]['peak_rss_gib']:.2f} GiB, promoted {done[mode]['promoted']}")
            repeats.append(done)
    rows = []
    for mode in ("inprocess", "multiprocess"):
        runs = [{"seconds": r[mode]["seconds"], "script_seconds": r["script"]["seconds"],
                 "ratio": r[mode]["seconds"] / r["script"]["seconds"], "promoted": r[mode]["promoted"],
                 "script_promoted": r["script"]["promoted"], "peak_rss_gib": r[mode]["peak_rss_gib"],
                 "largest_child_rss_gib": r[mode]["largest_child_rss_gib"]} for r in repeats]
        ratio = statistics.median(r["ratio"] for r in runs)
        rows.append(with_stats(Row(
            name=f"refresh_{mode}",
            what=f"full refresh of one partition ({cfg.n_players:,} players simulated, "
                 f"{summary['session_rows']:,} session rows, tuning budget {settings['training']['tuning_budget']}), "
                 f"{'in-process' if mode == 'inprocess' else 'multiprocess'} executor, fresh process",
            value=round(statistics.median(r["seconds"] for r in runs), 2), unit="s",
            target=f"<= {TARGETS[mode]}x the plain script", met=ratio <= TARGETS[mode],
            baseline=round(statistics.median(r["script_seconds"] for r in runs), 2),
            baseline_what="the same work as a plain Python script in one process (s)",
            ratio=round(ratio, 3), ratio_what="Dagster time / script time, per repeat (median)", runs=runs,
        )))
    peaks = [r["inprocess"]["peak_rss_gib"] for r in repeats]
    script_peaks = [r["script"]["peak_rss_gib"] for r in repeats]
    peak = max(peaks)
    rows.append(with_stats(Row(
        name="refresh_peak_memory",
        what=f"peak resident memory of the full in-process refresh ({cfg.n_players:,} players)",
        value=round(peak, 3), unit="GiB", target=f"<= {MEMORY_TARGET_GIB} GiB", met=peak <= MEMORY_TARGET_GIB,
        baseline=round(max(script_peaks), 3), baseline_what="the plain script's peak (GiB), for reference",
        ratio=round(peak / max(script_peaks), 3), ratio_what="Dagster peak / script peak",
        runs=[{"peak_rss_gib": p, "script_peak_rss_gib": s,
               "multiprocess_largest_step_rss_gib": r["multiprocess"]["largest_child_rss_gib"]}
              for p, s, r in zip(peaks, script_peaks, repeats)],
    )))
    return rows


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
