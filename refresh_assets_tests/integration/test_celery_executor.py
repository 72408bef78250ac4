"""refresh_job through the Celery executor: a real `dagster-celery worker` on the real RabbitMQ, the production
instance (dagster.yaml) on a PostgreSQL database of its own, against an in-process run of the same partition.

* the worker is `refresh-assets worker` (the README's command); the run is launched by `dagster job execute`
  with REFRESH_ASSETS_EXECUTOR=celery; every step (dataset, the
  four candidates, comparison, champion) is a Celery task of its own, received by the worker, and ran in the
  worker's process tree: the pid Dagster records on each STEP_START is a worker process, never the launcher;
* the decision, the metrics, the champion algorithm, every candidate's tuned parameters and CV score, and the
  hash of the holdout scores file (every candidate's score for every holdout row) equal those of an
  in-process run on the same warehouse and seed, whose outputs went to an object store (fsspec memory://,
  the same code path as s3://) instead of a local folder.

The queue name is unique to the test run, so no other worker on the broker takes its tasks, and it is
deleted at the end; the worker's process group is terminated. Needs RabbitMQ at 127.0.0.1:5672
(REFRESH_ASSETS_TEST_AMQP_URL) and PostgreSQL as for test_postgres_ops; fails, not skips, without them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from refresh_assets_tests.conftest import CANDIDATES, LIGHT_RUN_CONFIG
from refresh_assets_tests.integration.dagster_processes import BIN, REPO, project_env, wait_for, write_instance_yaml
from refresh_assets_tests.integration.test_postgres_ops import PG, pg_database  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

PARTITION = "2026-04-06"
BROKER = os.environ.get("REFRESH_ASSETS_TEST_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
RUN_TIMEOUT = 600
STEPS = {"training_dataset", "training_dataset_checks", *(f"candidate_{a}" for a in CANDIDATES), "model_comparison",
         "champion_model"}


def descendants(root_pid: int) -> set[int]:
    """Every live process below root_pid (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def delete_queue(queue: str) -> None:
    import kombu

    with kombu.Connection(BROKER, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


def outcome(outputs, registry_root: Path) -> dict:
    """What a refresh decided and produced, by content: the same seed and data must give the same values.

    Model files are compared by what they predict, not by their bytes: a skops file names its members after
    object ids and stamps them with the save time, so two saves of the same fitted model differ. The holdout
    scores file holds every candidate's (and so the champion's) score for every holdout row.
    """
    from refresh_assets.core.object_store import open_output_store
    from refresh_assets.core.registry import ModelRegistry

    store = open_output_store(outputs)
    comparison_dir = store.current("model_comparison", PARTITION)
    decision = json.loads((comparison_dir / "decision.json").read_text())
    champion = ModelRegistry(registry_root).current_champion()
    candidates = {a: store.read_manifest(store.current(f"candidate_{a}", PARTITION)) for a in CANDIDATES}
    return {
        "promote": decision["promote"],
        "challenger": decision["challenger"],
        "decision": decision["decision"],
        "metrics": decision["metrics"],
        "champion_algorithm": champion.algorithm,
        "candidates": {a: {"best_params": m["best_params"], "cv_score_roc_auc": m["cv_score_roc_auc"]}
                       for a, m in candidates.items()},
        "holdout_scores_sha256": store.read_manifest(comparison_dir)["files"]["holdout_scores.parquet"]["sha256"],
        "dataset_hash": store.read_manifest(store.current("training_dataset", PARTITION))["dataset_hash"],
    }


@pytest.fixture(scope="module")
def celery_run(tmp_path_factory, drift_warehouse, pg_database):  # noqa: F811 (the imported fixture)
    """One refresh through a Celery worker; yields what the assertions need, with the worker still alive."""
    root = tmp_path_factory.mktemp("celery")
    home, data = root / "home", root / "data"
    write_instance_yaml(home, storage=yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())["storage"])
    queue = f"refresh_assets_test_{uuid.uuid4().hex[:12]}"
    env = project_env(home, data, drift_warehouse, **PG, REFRESH_ASSETS_PG_DB=pg_database,
                      REFRESH_ASSETS_EXECUTOR="celery", REFRESH_ASSETS_CELERY_BROKER=BROKER,
                      REFRESH_ASSETS_CELERY_BACKEND="rpc://", REFRESH_ASSETS_CELERY_QUEUE=queue)
    run_config = root / "run.yaml"
    run_config.write_text(yaml.safe_dump(LIGHT_RUN_CONFIG))
    worker_log = root / "worker.log"
    worker_output = open(worker_log, "ab")
    worker = subprocess.Popen(  # the README's command; it runs `dagster-celery worker start` -> `celery worker`
        [str(BIN / "refresh-assets"), "worker", "--queue", queue, "--concurrency", "2", "--dagster-home", str(home)],
        env=env, cwd=REPO, stdout=worker_output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: worker.poll() is not None or " ready." in worker_log.read_text(), timeout=120,
                 what=f"the Celery worker to be ready ({worker_log})")
        assert worker.poll() is None, f"worker exited ({worker.returncode}):\n{worker_log.read_text()[-3000:]}"

        launcher_log = root / "launcher.log"
        with open(launcher_log, "wb") as log:
            launcher = subprocess.Popen(
                [str(BIN / "dagster"), "job", "execute", "-m", "refresh_assets.definitions", "-j", "refresh_job",
                 "-c", str(run_config), "--tags", json.dumps({"dagster/partition": PARTITION})],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            launcher.wait(timeout=RUN_TIMEOUT)
        worker_pids = descendants(worker.pid)

        old_environ = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("REFRESH_ASSETS_PG_", "DAGSTER_HOME"))})
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name="refresh_job"))
                assert len(runs) == 1, f"expected one refresh run, got {len(runs)}:\n{launcher_log.read_text()[-3000:]}"
                run = runs[0]
                records = instance.get_records_for_run(run.run_id, limit=10_000).records
                events = [record.event_log_entry for record in records if record.event_log_entry.dagster_event]
        finally:
            os.environ.clear()
            os.environ.update(old_environ)
        yield {"run": run, "events": events, "launcher_pid": launcher.pid, "launcher_rc": launcher.returncode,
               "launcher_log": launcher_log, "worker_pids": worker_pids, "worker_pid": worker.pid,
               "worker_log": worker_log, "queue": queue, "data": data}
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        worker_output.close()
        delete_queue(queue)


@pytest.fixture(scope="module")
def in_process_outcome(tmp_path_factory, drift_warehouse) -> dict:
    """The same refresh in one process, its outputs on an object store (fsspec memory://, as s3:// would be),
    then the propagation (shadow test, production scores) reading its inputs back from that store."""
    from upath import UPath

    from refresh_assets.definitions import build_defs
    from refresh_assets.resources import ArtifactStore, Registry, Warehouse

    root = tmp_path_factory.mktemp("in_process")
    outputs = UPath(f"memory://refresh-assets-{uuid.uuid4().hex[:8]}/outputs")
    defs = build_defs({"warehouse": Warehouse(location=str(drift_warehouse)),
                       "artifacts": ArtifactStore(root=str(outputs)), "registry": Registry(root=str(root / "registry"))})
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("refresh_job").execute_in_process(
                instance=instance, partition_key=PARTITION, run_config=LIGHT_RUN_CONFIG)
            assert result.success
            # and the propagation the promotion chains to, reading the dataset and champion from the store
            propagation = defs.resolve_job_def("propagation_job").execute_in_process(
                instance=instance, partition_key=PARTITION)
            assert propagation.success
        assert str(outputs) in str(result.asset_materializations_for_node("model_comparison")[0].metadata["output_dir"].value)
        store = ArtifactStore(root=str(outputs)).store()
        dataset_rows = store.read_manifest(store.current("training_dataset", PARTITION))["stats"]["scoring"]["rows"]
        assert store.read_manifest(store.current("production_scores", PARTITION))["rows"] == dataset_rows > 0
        yield outcome(str(outputs), root / "registry")
    finally:
        if outputs.parent.exists():
            outputs.fs.rm(outputs.parent.path, recursive=True)


def test_the_celery_run_succeeds(celery_run):
    assert celery_run["launcher_rc"] == 0, celery_run["launcher_log"].read_text()[-3000:]
    assert celery_run["run"].status == dg.DagsterRunStatus.SUCCESS
    assert celery_run["run"].tags.get("dagster/partition") == PARTITION


def test_every_step_is_its_own_celery_task_run_by_the_worker(celery_run):
    events = celery_run["events"]
    started = {event.step_key: event.dagster_event.pid for event in events
               if event.dagster_event.event_type == dg.DagsterEventType.STEP_START}
    assert set(started) == STEPS
    for step, pid in started.items():
        assert pid != celery_run["launcher_pid"], f"{step} ran in the launcher process"
        assert pid in celery_run["worker_pids"], f"{step} ran in pid {pid}, not in the worker's processes"
    engine_messages = [(event.step_key, event.dagster_event.message or "") for event in events
                       if event.dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT]
    submitted = {step for step, message in engine_messages if f'to queue "{celery_run["queue"]}"' in message}
    assert submitted == STEPS, engine_messages
    delegated = {step for step, message in engine_messages if message.endswith(f"Executing steps {step} in celery worker")}
    assert delegated == STEPS, engine_messages
    worker_log = celery_run["worker_log"].read_text()
    assert worker_log.count("Task execute_plan[") >= 2 * len(STEPS)  # "received" and "succeeded" per step
    assert worker_log.count("] received") == len(STEPS)


def test_the_result_equals_an_in_process_run(celery_run, in_process_outcome):
    data = celery_run["data"]
    assert outcome(data / "outputs", data / "registry") == in_process_outcome
    assert in_process_outcome["promote"] is True  # first refresh: no champion yet
