"""The embedded instance keeps one SQLAlchemy Engine per SQLite file (refresh_assets/sqlite_engines.py), and
Dagster still stores and reads every event, run and check through it."""

import dagster as dg
import sqlalchemy
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage

from refresh_assets.local_runs import embedded_instance
from refresh_assets.sqlite_engines import EngineCache, keep_engines


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"))
def upstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    context.log.info("a log line is an event too")
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset(deps=[upstream], partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"))
def downstream() -> None:
    return None


@dg.asset_check(asset=downstream, blocking=True)
def downstream_is_fine() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def _count_engines(monkeypatch) -> list[str]:
    made: list[str] = []
    real = sqlalchemy.create_engine

    def counting(url, *args, **kwargs):
        made.append(str(url))
        return real(url, *args, **kwargs)

    # Dagster's storages hold their own reference to create_engine (dagster._core.storage.sql), so each is replaced
    monkeypatch.setattr(sqlalchemy, "create_engine", counting)
    for module in (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage):
        monkeypatch.setattr(module, "create_engine", counting)
    return made


def test_runs_store_and_read_every_event_with_one_engine_per_file(tmp_path, monkeypatch):
    instance = embedded_instance(tmp_path / "dagster_home")
    made = _count_engines(monkeypatch)
    results = [dg.materialize([upstream, downstream, downstream_is_fine], instance=instance, partition_key=key)
               for key in ("2024-01-01", "2024-01-02", "2024-01-03")]
    assert all(result.success for result in results)
    # what Dagster stored reads back through the same storages
    records = instance.fetch_materializations(dg.AssetKey("upstream"), limit=10).records
    assert sorted(r.partition_key for r in records) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert records[0].asset_materialization.metadata["rows"].value == 3
    logs = instance.all_logs(results[-1].run_id)
    assert any("a log line is an event too" in (entry.user_message or "") for entry in logs)
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [downstream_is_fine.check_key])[downstream_is_fine.check_key]
    assert check.status.value == "SUCCEEDED"
    assert len(instance.get_runs()) == 3
    # One Engine per file touched: the index, runs.db, schedules.db and each run's own event file. Without the
    # cache, Dagster 1.13.27 made one per query: 208 for these three small runs.
    assert len(made) == len(set(made)), made  # never a second Engine for a file
    assert {url.rsplit("/", 1)[-1] for url in made} <= {"index.db", "runs.db", "schedules.db",
                                                        *(f"{result.run_id}.db" for result in results)}, made


def test_other_storages_are_left_alone():
    with dg.DagsterInstance.ephemeral() as instance:
        assert keep_engines(instance) == []


def test_sqlite_storages_of_an_instance_are_all_changed(tmp_path):
    instance = embedded_instance(tmp_path / "home")
    assert keep_engines(instance) == ["run_storage", "schedule_storage", "event_log_storage"]


def test_the_cache_disposes_the_least_recently_used_but_keeps_the_index(tmp_path):
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("index", "a", "b", "c")]
    cache = EngineCache(limit=2, keep=(urls[0],))
    index = cache.get(urls[0])
    first = cache.get(urls[1])
    cache.get(urls[2])
    assert cache.get(urls[1]) is first  # used again: now the most recent
    cache.get(urls[3])  # evicts b, the least recently used run file
    assert len(cache) == 3
    assert cache.get(urls[0]) is index and cache.get(urls[1]) is first


def test_each_file_keeps_one_connection_without_an_fsync_per_commit_and_others_see_every_write(tmp_path, monkeypatch):
    import sqlite3

    instance = embedded_instance(tmp_path / "dagster_home")
    opened: list[str] = []
    real_connect = sqlite3.connect

    def counting(database, *args, **kwargs):
        opened.append(str(database))
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3.dbapi2, "connect", counting)  # what SQLAlchemy's pysqlite dialect calls
    results = [dg.materialize([upstream, downstream, downstream_is_fine], instance=instance, partition_key=key)
               for key in ("2024-01-01", "2024-01-02", "2024-01-03")]
    assert all(result.success for result in results)
    # Reopened per query before: 215 opens of these 5 files for the three runs. Now a file is opened again only
    # when two uses of it overlap (an extra connection, closed after): 14.
    assert {name.rsplit("/", 1)[-1] for name in opened} == {
        "index.db", "runs.db", *(f"{result.run_id}.db" for result in results)}, opened
    assert len(opened) <= 4 * len(set(opened)), sorted(opened)
    index = instance.event_log_storage
    with index.index_connection() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"  # where NORMAL cannot corrupt
    monkeypatch.undo()
    # Another instance on the same home with Dagster's own storages (as `dagster dev` would be) sees every write,
    # and what it writes while this one's connections sit idle is seen here.
    with dg.DagsterInstance.from_ref(instance.get_ref()) as other:
        assert len(other.get_runs()) == 3
        records = other.fetch_materializations(dg.AssetKey("upstream"), limit=10).records
        assert sorted(r.partition_key for r in records) == ["2024-01-01", "2024-01-02", "2024-01-03"]
        assert dg.materialize([upstream], instance=other, partition_key="2024-01-04").success
    assert len(instance.get_runs()) == 4
    assert instance.fetch_materializations(dg.AssetKey("upstream"), limit=1).records[0].partition_key == "2024-01-04"
