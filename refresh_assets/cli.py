"""`refresh-assets`: the refresh from the shell (simulate, refresh, score, champion, rollback, demo).

Everything runs on the embedded instance (SQLite under $DAGSTER_HOME, default data/dagster_home), so the
runs show up in `make ui` afterwards. Paths come from REFRESH_ASSETS_DATA_DIR (default: data/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

from refresh_assets import settings
from refresh_assets.heap import collection_paused_until_first_run
from refresh_assets.import_order import model_io_before_dagster

DEMO_PARTITIONS_BACK = (7, 0)  # the demo refreshes the two last weekly dates of the simulated window
DEMO_SCORED_DAY_BACK = 4  # and scores a day between them, as the daily schedule would


def _set_data_dir(path: str | None) -> Path:
    if path:
        os.environ["REFRESH_ASSETS_DATA_DIR"] = str(Path(path).resolve())
    return settings.data_dir()


#: Where a user's data comes from: each flag sets the variable the code location reads (settings.py), so the
#: runs this process executes and the processes it starts (serve, ui) see the same warehouse, query and dates.
SOURCE_VARIABLES = {"warehouse": "REFRESH_ASSETS_WAREHOUSE", "query": "REFRESH_ASSETS_QUERY",
                    "partition_start": "REFRESH_ASSETS_PARTITION_START"}


def _source_options(partition_start: bool = True) -> argparse.ArgumentParser:
    """--warehouse / --query (/ --partition-start): the data-source flags several commands share."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("your data (default: the environment variables, else the simulated game)")
    group.add_argument("--warehouse", metavar="PATH_OR_URL",
                       help="a DuckDB file, or a folder / object-store URL of Parquet files, each <name>.parquet "
                            "file or folder of Parquet files a table <name> (REFRESH_ASSETS_WAREHOUSE)")
    group.add_argument("--query", metavar="FILE.sql", help="your query script (REFRESH_ASSETS_QUERY; default: the "
                                                          "packaged churn_features.sql)")
    if partition_start:
        group.add_argument("--partition-start", metavar="YYYY-MM-DD",
                           help="first refresh date the code location offers (REFRESH_ASSETS_PARTITION_START, "
                                "default 2025-01-01)")
    return parent


def _apply_source(args) -> None:
    """Check the data-source flags and export them (absolute paths) before the code location is imported.
    Imports nothing heavy when no flag is given (`scorer` must start in well under 3 s)."""
    warehouse, query = getattr(args, "warehouse", None), getattr(args, "query", None)
    start = getattr(args, "partition_start", None)
    if not (warehouse or query or start):
        return
    from refresh_assets.config import ConfigError

    if warehouse:
        if "://" not in warehouse:
            if not Path(warehouse).exists():
                raise ConfigError(f"--warehouse {warehouse}: no such file or folder (a DuckDB file, or a folder of "
                                  "Parquet files)")
            warehouse = str(Path(warehouse).resolve())
        os.environ[SOURCE_VARIABLES["warehouse"]] = warehouse
    if query:
        if not Path(query).is_file():
            raise ConfigError(f"--query {query}: no such file (your query script, a .sql file)")
        os.environ[SOURCE_VARIABLES["query"]] = str(Path(query).resolve())
    if start:
        try:
            dt.date.fromisoformat(start)
        except ValueError:
            raise ConfigError(f"--partition-start must be a date YYYY-MM-DD, got {start!r}") from None
        os.environ[SOURCE_VARIABLES["partition_start"]] = start


def _instance():
    from refresh_assets.local_runs import embedded_instance

    home = os.environ.get("DAGSTER_HOME") or str(settings.data_dir() / "dagster_home")
    return embedded_instance(Path(home))


def _progress(verbose: bool = False):
    """Each step on stdout as it finishes (progress.py), so a minutes-long run is not silent."""
    from refresh_assets.progress import Progress

    return Progress.for_cli(verbose)


# ---------------------------------------------------------------- run config from --set key=value


def _parse_value(raw: str):
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if raw.lower() in ("", "none", "null"):
        return None
    return raw


def run_config_from_sets(pairs: list[str]) -> tuple[dict, list[str] | None]:
    """Turn ``key=value`` pairs into refresh_job run config; every op whose Config has the key gets it.

    ``algorithms=a,b`` limits which candidates may challenge (all four are still trained). Returns
    (run_config, algorithms).
    """
    from refresh_assets.config import OP_CONFIGS, ConfigError

    ops: dict[str, dict] = {}
    algorithms = None
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set takes key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        targets = [op for op, cls in OP_CONFIGS.items() if key in cls.model_fields]
        # a list setting (algorithms, slice_columns) takes a,b,c; an empty value is the empty list
        listed = any("list" in str(OP_CONFIGS[op].model_fields[key].annotation) for op in targets)
        value = [a.strip() for a in raw.split(",") if a.strip()] if listed else _parse_value(raw)
        if not targets:
            known = sorted({f for cls in OP_CONFIGS.values() for f in cls.model_fields})
            raise ConfigError(f"unknown setting {key!r}; known settings: {', '.join(known)}")
        for op in targets:
            ops.setdefault(op, {"config": {}})["config"][key] = value
        if key == "algorithms":
            algorithms = value
    return ({"ops": ops} if ops else {}), algorithms


# ---------------------------------------------------------------- summaries


def _fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def partition_summary(partition: str) -> str:
    from refresh_assets.resources import ArtifactStore

    store = ArtifactStore().store()
    lines = [f"== refresh {partition} =="]
    data_dir = store.current("training_dataset", partition)
    if data_dir is not None:
        stats = store.read_manifest(data_dir)["stats"]
        lines.append("dataset: " + ", ".join(
            f"{name} {s['rows']} rows" + (f" (label rate {s['label_rate']:.3f})" if s.get("label_rate") is not None else "")
            for name, s in ((k, stats[k]) for k in ("train", "holdout", "scoring") if k in stats)))
    comp_dir = store.current("model_comparison", partition)
    if comp_dir is None:
        lines.append("no comparison for this partition")
        return "\n".join(lines)
    record = json.loads((comp_dir / "decision.json").read_text())
    cols = ["roc_auc", "pr_auc", "log_loss", "brier", "precision_at_top_k", "recall_at_top_k",
            "calibration_slope", "calibration_intercept"]
    header = f"{'model':<18}" + "".join(f"{c:>{max(10, len(c) + 2)}}" for c in cols)
    lines.append(header)
    for name, metrics in record["metrics"].items():
        lines.append(f"{name:<18}" + "".join(f"{_fmt(metrics.get(c)):>{max(10, len(c) + 2)}}" for c in cols))
    boot = record["decision"].get("bootstrap") or {}
    if boot:
        lines.append(f"challenger - champion ROC AUC: {boot.get('observed_diff', 0):+.4f} "
                     f"[{boot.get('lower', 0):+.4f}, {boot.get('upper', 0):+.4f}]")
    lines.append(f"decision: {'PROMOTE' if record['promote'] else 'KEEP'} - {record['decision']['reason']}")
    champ_dir = store.current("champion_model", partition)
    if champ_dir is not None:
        champ = json.loads((champ_dir / "champion.json").read_text())
        lines.append(f"champion: v{champ['version']} ({champ['algorithm']}), promoted={champ['promoted']}")
    shadow_dir = store.current("champion_shadow_test", partition)
    scores_dir = store.current("production_scores", partition)
    if shadow_dir is not None and record["promote"]:
        shadow = json.loads((shadow_dir / "shadow_test.json").read_text())
        if shadow.get("previous_version") is None:
            lines.append("propagation: shadow test - first champion, nothing to compare")
        else:
            lines.append(f"propagation: shadow test v{shadow['previous_version']} -> v{shadow['new_version']}: "
                         f"rank corr {shadow['spearman_rank_correlation']:.3f}, "
                         f"top-k overlap {shadow['top_k_overlap']:.3f}")
    if scores_dir is not None:
        manifest = store.read_manifest(scores_dir)
        lines.append(f"production_scores: {manifest['rows']} rows scored with v{manifest['champion_version']}")
    return "\n".join(lines)


def champion_report(as_json: bool) -> str:
    from refresh_assets.core.registry import ModelRegistry

    registry = ModelRegistry(settings.data_dir() / "registry")
    champion = registry.current_champion()
    versions = registry.versions()
    events = registry.events()
    if as_json:
        def row(obj):
            d = dict(obj.__dict__)
            return {k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in d.items()}
        return json.dumps({"champion": row(champion) if champion else None,
                           "versions": [row(v) for v in versions], "events": [row(e) for e in events]},
                          indent=2, default=str)
    if champion is None:
        return "no champion yet"
    lines = [f"champion: v{champion.version} {champion.algorithm} (from partition {champion.partition_key}, "
             f"ROC AUC {champion.metrics.get('roc_auc', float('nan')):.4f})", "", "history:"]
    for e in events:
        lines.append(f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.action:<8} v{e.version:<3} partition {e.partition_key or '-'}"
                     f"  run {e.run_id[:8]}  {e.reason}")
    return "\n".join(lines)


# ---------------------------------------------------------------- commands


def cmd_simulate(args) -> int:
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    cfg = SimulationConfig(
        n_players=args.players, days=args.days, start_date=dt.date.fromisoformat(args.start), seed=args.seed,
        warmup_days=args.warmup_days,
        drift_date=dt.date.fromisoformat(args.drift_date) if args.drift_date else None,
        concept_drift=args.concept_drift, covariate_drift=args.covariate_drift,
    )
    cfg.validate()
    out = Path(args.out) if args.out else settings.warehouse_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = simulate_to_duckdb(cfg, out)
    print(json.dumps({**summary, "path": str(out)}, indent=2, default=str))
    return 0


@collection_paused_until_first_run()  # start-up builds the heap, then it is frozen (heap.py)
def cmd_refresh(args) -> int:
    model_io_before_dagster()  # skops' import scans sys.modules: 0.1-0.7 s slower after Dagster's (import_order.py)
    from refresh_assets.config import preflight
    from refresh_assets.definitions import defs
    from refresh_assets.local_runs import failure_summary, run_refresh

    run_config, _algorithms = run_config_from_sets(args.set or [])
    preflight(run_config, args.partition)
    instance = _instance()
    outcome = run_refresh(defs, instance, args.partition, run_config, raise_on_error=False, quiet=not args.verbose,
                          progress=_progress(args.verbose))
    print(partition_summary(args.partition))
    print(f"run {outcome.run_id}: {'success' if outcome.success else 'FAILED'}")
    if not outcome.success:
        for line in failure_summary(instance, outcome.run_id):
            print(f"  {line}", file=sys.stderr)
    for partition, run_id, ok in outcome.propagation_runs:
        print(f"propagation {partition} run {run_id}: {'success' if ok else 'FAILED'}")
    return 0 if outcome.success and all(ok for *_, ok in outcome.propagation_runs) else 1


def cmd_champion(args) -> int:
    print(champion_report(args.json))
    return 0


@collection_paused_until_first_run()  # start-up builds the heap, then it is frozen (heap.py)
def cmd_rollback(args) -> int:
    model_io_before_dagster()  # skops' import scans sys.modules: 0.1-0.7 s slower after Dagster's (import_order.py)
    from refresh_assets.core.registry import ModelRegistry
    from refresh_assets.definitions import defs
    from refresh_assets.local_runs import failure_summary, latest_scored_partition, rollback_run_config, run_refresh

    if args.partition:
        from refresh_assets.config import ConfigError
        from refresh_assets.partitions import partition_key_problem

        if problem := partition_key_problem(args.partition):
            raise ConfigError(problem)
    registry = ModelRegistry(settings.data_dir() / "registry")
    known = {v.version: v for v in registry.versions()}
    if args.version not in known:
        print(f"error: the registry {registry.root} has no version {args.version} (it has "
              f"{', '.join(f'v{v}' for v in sorted(known)) or 'none'}); `refresh-assets champion` lists them",
              file=sys.stderr)
        return 2
    champion = registry.current_champion()
    if champion is not None and champion.version == args.version:
        print(f"error: v{args.version} is already the champion; nothing to roll back", file=sys.stderr)
        return 2
    instance = _instance()
    partition = args.partition or latest_scored_partition(instance)
    if partition is None:
        print("error: no day has production scores yet to re-score after the rollback: give --partition YYYY-MM-DD",
              file=sys.stderr)
        return 2
    outcome = run_refresh(defs, instance, partition, rollback_run_config(args.version, args.reason),
                          tags={"refresh_assets/trigger": "rollback"}, raise_on_error=False,
                          quiet=not args.verbose, job_name="rollback_job")
    if not outcome.success:
        for line in failure_summary(instance, outcome.run_id):
            print(f"  {line}", file=sys.stderr)
        print(f"rollback run {outcome.run_id}: FAILED; the champion is unchanged", file=sys.stderr)
        return 1
    version = known[args.version]
    print(f"champion is now v{version.version} ({version.algorithm}, from partition {version.partition_key}); "
          f"rollback run {outcome.run_id} recorded it as {partition}'s champion_model")
    for day, run_id, ok in outcome.propagation_runs:
        print(f"propagation {day} run {run_id}: {'success' if ok else 'FAILED'}")
    for line in scoring_summary(partition).splitlines():
        if line.startswith("production_scores"):
            print(line)
    return 0 if all(ok for *_, ok in outcome.propagation_runs) else 1


def cmd_registry(args) -> int:
    """`registry verify` (exit 0 consistent, 1 not), `registry rebuild` / `registry journal` (exit 0 done, 1
    refused: the message says what --force would drop)."""
    from refresh_assets.core.registry import RegistryRebuildRefused, rebuild_registry, verify_registry, write_journal

    root = Path(args.registry).resolve() if args.registry else settings.data_dir() / "registry"
    if args.action == "verify":
        check = verify_registry(root)
        print("\n".join(check.lines()))
        return 0 if check.ok else 1
    try:
        lines = (rebuild_registry if args.action == "rebuild" else write_journal)(root, force=args.force)
    except RegistryRebuildRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def cmd_cache(args) -> int:
    """`cache` (show) or `cache drop`: the dataset's snapshot cache in the output store."""
    from refresh_assets.core import snapshot_cache

    outputs = os.environ.get("REFRESH_ASSETS_OUTPUTS") or str(settings.data_dir() / "outputs")
    if args.action == "drop":
        print(snapshot_cache.drop(outputs))
    else:
        print("\n".join(snapshot_cache.describe(outputs)))
    return 0


@collection_paused_until_first_run()  # start-up builds the heap, then it is frozen (heap.py)
def cmd_score(args) -> int:
    model_io_before_dagster()  # skops' import scans sys.modules: 0.1-0.7 s slower after Dagster's (import_order.py)
    from refresh_assets.config import preflight
    from refresh_assets.definitions import defs
    from refresh_assets.local_runs import failure_summary, run_scoring

    refresh_config, _ = run_config_from_sets(args.set or [])
    preflight(refresh_config, args.partition)
    instance = _instance()
    outcome = run_scoring(defs, instance, args.partition, raise_on_error=False, quiet=not args.verbose,
                          refresh_run_config=refresh_config or None, progress=_progress(args.verbose))
    print(f"scoring run {outcome.run_id}: {'success' if outcome.success else 'FAILED'}")
    if not outcome.success:
        for line in failure_summary(instance, outcome.run_id):
            print(f"  {line}", file=sys.stderr)
        return 1
    print(scoring_summary(args.partition))
    for day, run_id, ok in outcome.drift_refresh_runs:
        print(f"drift-triggered refresh {day} run {run_id}: {'success' if ok else 'FAILED'}")
        print(partition_summary(day))
    for day, run_id, ok in outcome.propagation_runs:
        print(f"propagation {day} run {run_id}: {'success' if ok else 'FAILED'}")
    runs = outcome.drift_refresh_runs + outcome.propagation_runs
    return 0 if all(ok for *_, ok in runs) else 1


def cmd_check_query(args) -> int:
    """Run the dataset query for one date and check it as a refresh would (contract + blocking rules); no training.

    Exit 0 when every rule passes, 1 when one fails, 2 on a config error or a warehouse that cannot be opened."""
    import contextlib

    from refresh_assets.config import ComparisonConfig, ConfigError, DatasetChecksConfig, DatasetConfig, preflight
    from refresh_assets.core.query_check import check_query, render
    from refresh_assets.resources import Warehouse

    run_config, _ = run_config_from_sets(args.set or [])
    preflight(run_config, args.partition)  # the same validation as the first step of a refresh

    def op_config(cls, op: str):
        return cls(**(((run_config.get("ops") or {}).get(op) or {}).get("config") or {}))

    spec = op_config(DatasetConfig, "training_dataset").spec(dt.date.fromisoformat(args.partition))
    comparison = op_config(ComparisonConfig, "model_comparison")
    # as assets/dataset.run_limits: the checks' thresholds plus the comparison's slice columns
    limits = op_config(DatasetChecksConfig, "training_dataset_checks").limits(slice_columns=comparison.slice_columns)
    warehouse = Warehouse()
    with contextlib.ExitStack() as stack:
        try:
            con = stack.enter_context(warehouse.connect())
        except Exception as exc:  # not found, locked, not a DuckDB file: one line, no traceback
            raise ConfigError(f"cannot open the warehouse {warehouse.location}: {str(exc).splitlines()[0]}") from exc
        check = check_query(con, spec, warehouse.query_path, limits, comparison.slice_columns,
                            min_slice_rows=comparison.min_slice_rows,
                            min_slice_positives=comparison.min_slice_positives, source=warehouse.location)
    print(json.dumps(check.to_dict(), indent=2, default=str) if args.json else render(check))
    return 0 if check.ok else 1


def scoring_summary(partition: str) -> str:
    """What a day's scoring run left: the population, the scores and the drift verdict."""
    from refresh_assets.resources import ArtifactStore

    store = ArtifactStore().store()
    lines = []
    population = store.current("scoring_population", partition)
    if population is not None:
        lines.append(f"scoring_population: {store.read_manifest(population)['stats']['scoring']['rows']} rows")
    scores = store.current("production_scores", partition)
    if scores is not None:
        manifest = store.read_manifest(scores)
        lines.append(f"production_scores: {manifest['rows']} rows scored with v{manifest['champion_version']}")
    report = store.current("drift_report", partition)
    if report is not None:
        drift = store.read_manifest(report)["drift"]
        drifted = [c["column"] for c in drift["columns"] if c["drifted"]]
        lines.append(f"drift_report: dataset drift {drift['dataset_drift']} (share {drift['drift_share']:.2f}"
                     f"{', drifted: ' + ', '.join(drifted) if drifted else ''})")
    return "\n".join(lines)


def cmd_trigger(args) -> int:
    from refresh_assets import trigger

    run_config, _ = run_config_from_sets(args.set or [])
    # --warehouse / --query: this run's warehouse resource (the server's own settings stay its default)
    warehouse = {key: value for key, value in (("location", os.environ.get(SOURCE_VARIABLES["warehouse"])
                                                 if args.warehouse else None),
                                                ("query_path", os.environ.get(SOURCE_VARIABLES["query"])
                                                 if args.query else None)) if value}
    if warehouse:
        run_config = {**run_config, "resources": {"warehouse": {"config": warehouse}}}
    tags = dict(t.split("=", 1) for t in (args.tag or []))
    run_id = trigger.launch(args.host, args.port, args.job, args.partition, run_config or None, tags or None)
    print(run_id, flush=True)
    if not args.wait:
        return 0
    status = trigger.wait(args.host, args.port, run_id, timeout=args.timeout)
    print(f"run {run_id}: {status}")
    return 0 if status == "SUCCESS" else 1


def cmd_cancel(args) -> int:
    from refresh_assets import trigger

    trigger.cancel(args.host, args.port, args.run_id, force=args.force)
    print(f"run {args.run_id}: {'marked CANCELED' if args.force else 'termination requested'}")
    return 0


def _ensure_database() -> None:
    """Create the PostgreSQL database named by REFRESH_ASSETS_PG_DB when it does not exist yet."""
    import psycopg2

    name = os.environ["REFRESH_ASSETS_PG_DB"]
    con = psycopg2.connect(host=os.environ["REFRESH_ASSETS_PG_HOST"], port=os.environ["REFRESH_ASSETS_PG_PORT"],
                           user=os.environ["REFRESH_ASSETS_PG_USER"],
                           password=os.environ.get("REFRESH_ASSETS_PG_PASSWORD", ""), dbname="postgres")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                from psycopg2 import sql

                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
    finally:
        con.close()


def _production_env(dagster_home: str | None) -> dict[str, str]:
    """The environment of the production instance's processes: REFRESH_ASSETS_PG_* defaults, DAGSTER_HOME."""
    env = dict(os.environ)
    defaults = {"REFRESH_ASSETS_PG_HOST": "127.0.0.1", "REFRESH_ASSETS_PG_PORT": "5432",
                "REFRESH_ASSETS_PG_USER": "postgres", "REFRESH_ASSETS_PG_PASSWORD": "",
                "REFRESH_ASSETS_PG_DB": "refresh_assets",
                "REFRESH_ASSETS_COMPUTE_LOG_DIR": str(settings.data_dir() / "compute_logs")}
    for key, value in defaults.items():
        env.setdefault(key, value)
        os.environ.setdefault(key, value)
    env["DAGSTER_HOME"] = str(dagster_home or _production_home())
    env["REFRESH_ASSETS_DATA_DIR"] = str(settings.data_dir())
    return env


def _production_home() -> Path:
    """<data-dir>/dagster_home_postgres holding a fresh copy of deploy/postgres/dagster.yaml: the production
    instance's runtime files stay under the data folder, and its configuration is always the checkout's."""
    home = settings.data_dir() / "dagster_home_postgres"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(settings.POSTGRES_INSTANCE_YAML.read_text())
    return home


def cmd_worker(args) -> int:
    """A Celery worker that runs the steps of runs launched with REFRESH_ASSETS_EXECUTOR=celery.

    Same instance and environment as `serve` (the worker loads the code location and writes events to the
    same PostgreSQL), listening on the queue the executor sends steps to.
    """
    import subprocess
    import tempfile

    import yaml

    from refresh_assets.executors import DEFAULT_CELERY_BACKEND, DEFAULT_CELERY_BROKER, DEFAULT_CELERY_QUEUE

    env = _production_env(args.dagster_home)
    env["REFRESH_ASSETS_EXECUTOR"] = "celery"  # the run config names the celery executor: validate it the same way
    broker = env.setdefault("REFRESH_ASSETS_CELERY_BROKER", DEFAULT_CELERY_BROKER)
    backend = env.setdefault("REFRESH_ASSETS_CELERY_BACKEND", DEFAULT_CELERY_BACKEND)
    queue = args.queue or env.get("REFRESH_ASSETS_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE
    binary = Path(sys.executable).parent
    env["PATH"] = f"{binary}{os.pathsep}{env.get('PATH', '')}"  # dagster-celery starts the `celery` command
    print(f"Celery worker on queue {queue!r} of {broker} ({args.concurrency} steps at once), "
          f"instance {env['DAGSTER_HOME']}/dagster.yaml; Ctrl-C stops it", flush=True)
    with tempfile.TemporaryDirectory(prefix="refresh-assets-celery-") as config_dir:
        config_path = Path(config_dir) / "celery.yaml"
        config_path.write_text(yaml.safe_dump({"execution": {"config": {
            "broker": broker, "backend": backend, "config_source": {"worker_concurrency": args.concurrency}}}}))
        return subprocess.call([str(binary / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                "-y", str(config_path), "-q", queue, "--loglevel", args.loglevel],
                               env=env, cwd=settings.PROJECT_ROOT)


def _reports_sidecar(args, env: dict[str, str] | None = None):
    """`refresh-assets reports` beside the UI (`ui`, `serve`), so the report links in the metadata answer: on
    127.0.0.1:8020 unless --reports-port / REFRESH_ASSETS_REPORTS_URL say otherwise; --reports-port 0: none."""
    import subprocess
    from urllib.parse import urlsplit

    port = args.reports_port
    if port is None:
        url = os.environ.get("REFRESH_ASSETS_REPORTS_URL", "http://127.0.0.1:8020")
        port = urlsplit(url).port or 8020
    if port == 0:
        return None
    return subprocess.Popen([str(Path(sys.executable).parent / "refresh-assets"), "--data-dir", str(settings.data_dir()),
                             "reports", "--host", args.reports_host, "--port", str(port)],
                            env=env or os.environ.copy(), cwd=settings.PROJECT_ROOT)


def _stop_sidecar(proc) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - it is going away with us anyway
            proc.kill()


def _reports_flags(parser) -> None:
    parser.add_argument("--reports-port", type=int, default=None,
                        help="port of the reports server started beside the UI, for the report links in the metadata "
                             "(default: the port of REFRESH_ASSETS_REPORTS_URL, else 8020; 0: do not start it)")
    parser.add_argument("--reports-host", default="127.0.0.1",
                        help="its bind address (default 127.0.0.1; another host: set REFRESH_ASSETS_REPORTS_URL to the "
                             "address browsers reach, so the links name it)")


def cmd_serve(args) -> int:
    """dagster-webserver + dagster-daemon on the production instance (PostgreSQL, the repo's dagster.yaml)."""
    import signal
    import subprocess

    repo = settings.PROJECT_ROOT
    env = _production_env(args.dagster_home)
    _ensure_database()
    binary = Path(sys.executable).parent
    workspace = str(repo / "workspace.yaml")
    procs = [
        subprocess.Popen([str(binary / "dagster-daemon"), "run", "-w", workspace], env=env, cwd=repo),
        subprocess.Popen([str(binary / "dagster-webserver"), "-w", workspace, "-h", args.host, "-p", str(args.port)],
                         env=env, cwd=repo),
    ]
    reports = _reports_sidecar(args, env)  # not among procs: a busy reports port must not stop the webserver
    print(f"webserver on http://{args.host}:{args.port} and daemon, instance {env['DAGSTER_HOME']}/dagster.yaml "
          f"(PostgreSQL {env['REFRESH_ASSETS_PG_HOST']}:{env['REFRESH_ASSETS_PG_PORT']}/{env['REFRESH_ASSETS_PG_DB']}); "
          "Ctrl-C stops both", flush=True)

    def stop(*_):
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(proc.poll() is None for proc in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        _stop_sidecar(reports)
        for proc in procs:
            proc.wait(timeout=60)
    return max(proc.returncode or 0 for proc in procs)


def cmd_ui(args) -> int:
    """`dagster dev` (webserver + daemon) on the embedded instance the CLI's runs are in (<data-dir>/dagster_home,
    SQLite, the top-level dagster.yaml), with this checkout's workspace and the data-source flags exported."""
    import subprocess

    home = settings.data_dir() / "dagster_home"
    _instance().dispose()  # creates the home and its dagster.yaml (a copy of the top-level one) if absent
    env = {**os.environ, "DAGSTER_HOME": str(home), "REFRESH_ASSETS_DATA_DIR": str(settings.data_dir())}
    binary = Path(sys.executable).parent
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home}/dagster.yaml); Ctrl-C stops it", flush=True)
    reports = _reports_sidecar(args, env)
    try:
        return subprocess.call([str(binary / "dagster"), "dev", "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
                                "-h", args.host, "-p", str(args.port)], env=env, cwd=settings.PROJECT_ROOT)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_sidecar(reports)


def cmd_scorer(args) -> int:
    """The real-time scorer (refresh_assets/serving/app.py): HTTP scoring with the champion's published scorer
    (<registry>/scorers/v<N>/), swapped without a restart when the champion changes."""
    from refresh_assets.serving.app import serve

    registry = Path(args.registry).resolve() if args.registry else settings.data_dir() / "registry"
    print(f"real-time scorer on http://{args.host}:{args.port}/v1/score (registry {registry}, champion polled every "
          f"{args.poll_seconds:g}s); Ctrl-C stops it", flush=True)
    try:
        serve(registry, host=args.host, port=args.port, poll_seconds=args.poll_seconds)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_reports(args) -> int:
    """The read-only reports server (refresh_assets/serving/reports.py): the HTML reports of committed outputs,
    for the links (REFRESH_ASSETS_REPORTS_URL) the assets put in their metadata."""
    from refresh_assets.serving.reports import PortInUseError, is_loopback, serve_reports

    # the outputs root as resources.ArtifactStore resolves it (not imported: that would load Dagster)
    outputs = os.environ.get("REFRESH_ASSETS_OUTPUTS") or str(settings.data_dir() / "outputs")
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    if not is_loopback(args.host):
        print(f"warning: bound to {args.host}: the reports are then readable by anyone who reaches port {args.port} "
              "(there is no login); set REFRESH_ASSETS_REPORTS_URL for the Dagster processes so that the assets' "
              "links name this host", file=sys.stderr, flush=True)
    try:
        serve_reports(outputs, host=args.host, port=args.port, on_listening=lambda: print(
            f"reports on http://{shown_host}:{args.port}/ (outputs {outputs}); Ctrl-C stops it", flush=True))
    except PortInUseError as exc:
        print(f"error: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _demo_daily_scoring(instance, day: str) -> bool:
    """A day between the two refreshes: scored by scoring_job alone, as the daily schedule does."""
    from refresh_assets.definitions import defs
    from refresh_assets.local_runs import failure_summary, run_scoring

    print(f"== daily scoring {day} (no refresh of this day) ==", flush=True)
    t0 = time.perf_counter()
    outcome = run_scoring(defs, instance, day, raise_on_error=False, quiet=True, progress=_progress())
    for line in failure_summary(instance, outcome.run_id):
        print(f"  {line}", file=sys.stderr)
    print(scoring_summary(day))
    print(f"(scoring run {outcome.run_id[:8]} {'ok' if outcome.success else 'FAILED'} in "
          f"{time.perf_counter() - t0:.0f}s; drift-triggered refreshes: {len(outcome.drift_refresh_runs)})\n",
          flush=True)
    return outcome.success and all(ok for *_, ok in outcome.drift_refresh_runs + outcome.propagation_runs)


@collection_paused_until_first_run()  # start-up builds the heap, then it is frozen (heap.py)
def cmd_demo(args) -> int:
    """Simulate (if absent), refresh the last two weekly dates (scoring a day between them as the daily schedule
    would), chain propagation, print the summary."""
    model_io_before_dagster()  # skops' import scans sys.modules: 0.1-0.7 s slower after Dagster's (import_order.py)
    from refresh_assets.core.simulate import SimulationConfig, simulate_to_duckdb

    data = settings.data_dir()
    for sub in ("outputs", "registry", "dagster_home"):
        if args.reset and (data / sub).exists():
            shutil.rmtree(data / sub)
    cfg = SimulationConfig()
    warehouse = settings.warehouse_path()
    if not warehouse.exists():
        print(f"simulating {cfg.total_players()} players ({cfg.n_players} installing in the {cfg.days}-day window, "
              f"the rest in {cfg.warmup_days} warm-up days) into {warehouse} ...", flush=True)
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        summary = simulate_to_duckdb(cfg, warehouse)
        print(f"  {summary['session_rows']} session rows, {summary['purchase_rows']} purchases "
              f"in {summary['seconds']:.1f}s", flush=True)
    from refresh_assets.definitions import defs
    from refresh_assets.local_runs import failure_summary, run_refresh

    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")  # the demo never touches another instance
    instance = _instance()
    last = cfg.end_date()
    partitions = [str(last - dt.timedelta(days=back)) for back in DEMO_PARTITIONS_BACK]
    ok = True
    for partition in partitions:
        print(f"refreshing {partition} ...", flush=True)
        t0 = time.perf_counter()
        outcome = run_refresh(defs, instance, partition, raise_on_error=False, quiet=True, progress=_progress())
        ok &= outcome.success and all(s for *_, s in outcome.propagation_runs)
        for line in failure_summary(instance, outcome.run_id):
            print(f"  {line}", file=sys.stderr)
        print(partition_summary(partition))
        print(f"(refresh run {outcome.run_id[:8]} {'ok' if outcome.success else 'FAILED'} in "
              f"{time.perf_counter() - t0:.0f}s; propagation runs requested by promotion_sensor: "
              f"{len(outcome.propagation_runs)})\n", flush=True)
        if partition == partitions[0]:
            ok &= _demo_daily_scoring(instance, str(last - dt.timedelta(days=DEMO_SCORED_DAY_BACK)))
    print(champion_report(False))
    print(f"\noutputs and manifests under {data / 'outputs'}")
    relative = os.path.relpath(data)
    shown = relative if not relative.startswith("..") else os.path.abspath(data)  # inside the repo: short
    print(f"browse these runs in the Dagster UI: make ui DATA={shown}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refresh-assets", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="runtime data folder (default: $REFRESH_ASSETS_DATA_DIR or ./data)")
    parser.add_argument("--verbose", dest="global_verbose", action="store_true",
                        help="on an error, show the Python traceback too (a command's own --verbose does as well)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write a simulated raw warehouse (DuckDB)")
    p.add_argument("--players", type=int, default=20_000)
    p.add_argument("--days", type=int, default=182)
    p.add_argument("--start", default="2026-01-05")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--warmup-days", type=int, default=365,
                   help="history simulated before --start so the population is steady (default 365)")
    p.add_argument("--drift-date")
    p.add_argument("--concept-drift", type=float, default=0.0)
    p.add_argument("--covariate-drift", type=float, default=0.0)
    p.add_argument("--out", help="DuckDB file (default: the warehouse path)")
    p.set_defaults(func=cmd_simulate)

    source, remote_source = _source_options(), _source_options(partition_start=False)
    p = sub.add_parser("refresh", parents=[source],
                       help="run refresh_job for one partition, then the chained propagation")
    p.add_argument("--partition", required=True, help="the refresh date D, YYYY-MM-DD")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a run input, e.g. tuning_budget=8")
    p.add_argument("--verbose", action="store_true", help="show Dagster's own event log lines")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("champion", help="show the current champion and its history")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_champion)

    p = sub.add_parser("rollback", parents=[source], help="make an earlier version champion again and re-score production with it")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--reason", default="manual rollback")
    p.add_argument("--partition", help="the day to record the rollback on and re-score (default: the day "
                                       "production was last scored)")
    p.add_argument("--verbose", action="store_true", help="show Dagster's own event log lines")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("score", parents=[source], help="run scoring_job for one day (population, scores, drift report); a new "
                                     "drift runs its refresh")
    p.add_argument("--partition", required=True, help="the day D, YYYY-MM-DD")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a run input of the refresh a new drift triggers, e.g. tuning_budget=8")
    p.add_argument("--verbose", action="store_true", help="show Dagster's own event log lines")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("check-query", parents=[source], help="run the dataset query for one date and check the contract and the "
                                           "blocking dataset rules, in seconds; trains nothing (exit 0 ok, 1 a "
                                           "rule failed, 2 a config error)")
    p.add_argument("--partition", required=True, help="the refresh date D, YYYY-MM-DD")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a run input of the refresh, e.g. lookback_days=140 or max_null_rate=0.5")
    p.add_argument("--json", action="store_true", help="the check as JSON")
    p.set_defaults(func=cmd_check_query)

    p = sub.add_parser("trigger", parents=[remote_source],
                       help="launch a job on a running webserver through its GraphQL API (--warehouse/--query: "
                            "this run's warehouse resource, paths as the server sees them)")
    p.add_argument("--job", default="refresh_job")
    p.add_argument("--partition", help="the partition (refresh date D), YYYY-MM-DD")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a run input, e.g. tuning_budget=8")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a run tag")
    p.add_argument("--host", default=os.environ.get("REFRESH_ASSETS_WEBSERVER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("REFRESH_ASSETS_WEBSERVER_PORT", "3000")))
    p.add_argument("--wait", action="store_true", help="follow the run to its end; exit 1 unless it succeeded")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits")
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("cancel", help="terminate a run through the GraphQL API")
    p.add_argument("run_id")
    p.add_argument("--force", action="store_true",
                   help="mark the run CANCELED at once, e.g. one stuck STARTING whose worker never came up")
    p.add_argument("--host", default=os.environ.get("REFRESH_ASSETS_WEBSERVER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("REFRESH_ASSETS_WEBSERVER_PORT", "3000")))
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("serve", parents=[source],
                       help="webserver + daemon on PostgreSQL (the production instance, deploy/postgres/dagster.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: Dagster OSS has no login)")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--dagster-home", help="folder holding your own instance dagster.yaml (default: a copy of "
                                          "deploy/postgres/dagster.yaml in <data-dir>/dagster_home_postgres)")
    _reports_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ui", parents=[source],
                       help="the Dagster UI and daemon (dagster dev) on the embedded instance <data-dir>/dagster_home, "
                            "where the CLI's runs are")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: Dagster OSS has no login)")
    p.add_argument("--port", type=int, default=3000)
    _reports_flags(p)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("worker", help="a Celery worker for runs with REFRESH_ASSETS_EXECUTOR=celery (same instance as serve)")
    p.add_argument("--queue", help="queue to take steps from (default REFRESH_ASSETS_CELERY_QUEUE, else 'dagster')")
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="steps run at once (default: CPU count)")
    p.add_argument("--loglevel", default="INFO", help="Celery log level")
    p.add_argument("--dagster-home", help="folder holding your own instance dagster.yaml (default: as serve)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("scorer", help="the real-time scorer: POST /v1/score with the champion's published scorer, "
                                      "hot-swapped when the champion changes")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: the API has no login)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--poll-seconds", type=float, default=0.5, help="how often the champion is read (default 0.5)")
    p.add_argument("--registry", help="registry root (default <data-dir>/registry)")
    p.set_defaults(func=cmd_scorer)

    p = sub.add_parser("reports", help="a read-only server of the HTML reports of committed outputs (comparison, "
                                       "drift), for the links in the assets' metadata")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: the server has no login)")
    p.add_argument("--port", type=int, default=8020)
    p.set_defaults(func=cmd_reports)

    p = sub.add_parser("registry", help="the champion history: verify registry.duckdb against its journal, or "
                                        "rebuild it from the journal")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("verify", "check registry.duckdb, the journal and the model files against each other "
                                    "(exit 0 consistent, 1 not)"),
                         ("rebuild", "restore a damaged or missing registry.duckdb from the journal, exactly (the "
                                     "old file is kept as registry.duckdb.damaged-<time>)"),
                         ("journal", "write the journal from a readable registry.duckdb (a registry made before the "
                                     "journal, or damaged journal records)")):
        q = actions.add_parser(action, help=text, description=text)
        q.add_argument("--registry", help="registry root (default <data-dir>/registry)")
        if action != "verify":
            q.add_argument("--force", action="store_true",
                           help="rebuild: drop the journal records after its first problem; journal: replace "
                                "records that disagree with registry.duckdb")
    p.set_defaults(func=cmd_registry)

    p = sub.add_parser("cache", help="the dataset's snapshot cache: show what it holds, or drop it (safe at any "
                                     "time: the next refresh builds every snapshot from the raw tables)")
    p.add_argument("action", nargs="?", choices=("show", "drop"), default="show")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("demo", help="what `make run` does: simulate, refresh two dates, print the summary")
    p.add_argument("--no-reset", dest="reset", action="store_false",
                   help="keep earlier demo outputs, registry and runs (default: start the demo afresh)")
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    verbose = args.global_verbose or getattr(args, "verbose", False)
    try:
        _set_data_dir(args.data_dir)
        _apply_source(args)
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbose:
            raise
        print(f"error: {one_line_error(exc)}", file=sys.stderr)
        return 2 if is_known_error(exc) else 1


#: Failures a user causes and can fix (bad input, missing or damaged files, an unreachable server): one line,
#: exit 2. Anything else is a bug or an outage: one line too, exit 1; --verbose shows the traceback.
KNOWN_ERRORS = ("ConfigError", "DatasetContractError", "RegistryDamagedError", "RegistryLockedError",
                "UnknownModelVersionError", "NoChampionError", "ModelIntegrityError", "TriggerError",
                "DagsterGraphQLClientError", "TimeoutError", "FileNotFoundError", "PermissionError",
                "ConnectionError", "ConnectionRefusedError", "OperationalError", "IOException")


def is_known_error(exc: BaseException) -> bool:
    return any(cls.__name__ in KNOWN_ERRORS for cls in type(exc).__mro__)


def one_line_error(exc: BaseException) -> str:
    """The error as one line: its own message, first line (DuckDB and psycopg2 add context lines), with the
    type and the --verbose hint when it is not one of the known failures."""
    message = (str(exc).strip().splitlines() or [""])[0]
    if is_known_error(exc):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message} (unexpected; rerun with --verbose to see where)"


if __name__ == "__main__":
    sys.exit(main())
