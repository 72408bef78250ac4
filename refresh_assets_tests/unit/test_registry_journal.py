"""The champion history survives a damaged registry: the journal (core/journal.py) beside the model files,
`refresh-assets registry verify / rebuild / journal`, and one-line RegistryDamagedError for every reader and writer.

Each test builds a small real history (three promotes of skops files and a rollback), damages something, and
checks what every method and command says, and that a rebuild gives back the very same registry.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest

from refresh_assets import cli
from refresh_assets.core import artifacts, journal
from refresh_assets.core.registry import (
    ModelRegistry,
    RegistryDamagedError,
    RegistryRebuildRefused,
    rebuild_registry,
    verify_registry,
    write_journal,
)

REBUILD = "refresh-assets registry rebuild"
VARIABLES = ("REFRESH_ASSETS_DATA_DIR", "REFRESH_ASSETS_WAREHOUSE", "REFRESH_ASSETS_QUERY",
             "REFRESH_ASSETS_PARTITION_START", "DAGSTER_HOME")


@pytest.fixture(autouse=True)
def restored_environment(monkeypatch):
    """cli.main exports --data-dir as a variable (as a fresh process would): undo it after each test."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("candidates")
    paths = []
    for index, coefficient in enumerate((0.1, 2.5, -1.0)):
        path = folder / f"m{index}.skops"
        artifacts.save_model({"name": f"m{index}", "coef": np.array([coefficient, -coefficient])}, path)
        paths.append(path)
    return paths


def promote(reg: ModelRegistry, path: Path, index: int):
    return reg.promote(path, algorithm=f"algo_{index}", partition_key=f"2026-03-0{index + 1}",
                       metrics={"roc_auc": 0.8 + index / 100, "lift": float("nan"), "n": np.int64(7)},
                       dataset_hash=f"{index}" * 64, run_id=f"run-{index}", reason=f"MARKER promote {index}")


@pytest.fixture(scope="module")
def history_template(tmp_path_factory, model_files) -> Path:
    """v1, v2, v3 promoted, then a rollback to v1 (4 events): built once, copied for each test."""
    root = tmp_path_factory.mktemp("template") / "registry"
    reg = ModelRegistry(root, lock_timeout_seconds=5)
    for index, path in enumerate(model_files):
        promote(reg, path, index)
    reg.rollback(1, run_id="ops-1", reason="MARKER v3 drops revenue", partition_key="2026-03-09")
    return root


@pytest.fixture()
def history(tmp_path, history_template) -> ModelRegistry:
    root = tmp_path / "data" / "registry"
    shutil.copytree(history_template, root)
    return ModelRegistry(root, lock_timeout_seconds=5)


def snapshot(reg: ModelRegistry) -> dict:
    return {"dict": reg.to_dict(), "versions": reg.versions(), "events": reg.events(),
            "champion": reg.current_champion(), "history": reg.history()}


def journal_files(reg: ModelRegistry) -> list[str]:
    return sorted(p.name for p in reg.journal.dir.iterdir() if p.is_file())


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ the records


def test_every_change_is_one_checksummed_chained_record_holding_its_rows(history: ModelRegistry) -> None:
    assert journal_files(history) == ["00000001-promote-v1.json", "00000002-promote-v2.json",
                                      "00000003-promote-v3.json", "00000004-rollback-v1.json"]
    records = [history.journal.read(history.journal.dir / name) for name in journal_files(history)]
    assert [r.prev_sha256 for r in records] == [None] + [r.sha256 for r in records[:-1]]
    assert records[3].model_version is None and records[3].event["reason"] == "MARKER v3 drops revenue"
    for record, event in zip(records, history.events()):
        assert record.event["at"] == event.at.isoformat(timespec="microseconds")
        assert journal.parse_timestamp(record.event["at"]) == event.at  # microseconds, UTC
        assert (record.event["event_id"], record.event["version"], record.event["action"]) == (
            event.event_id, event.version, event.action)
    for record, version in zip(records, history.versions()):
        row = record.model_version
        assert journal.parse_timestamp(row["created_at"]) == version.created_at
        assert json.loads(row["metrics_json"]) == version.metrics == {"lift": None, "n": 7, "roc_auc": 0.8 + (
            version.version - 1) / 100}
        assert (row["model_file"], row["model_sha256"]) == (f"models/v{version.version}.skops", version.model_sha256)
    body = json.loads((history.journal.dir / "00000002-promote-v2.json").read_text())
    stated = body.pop("sha256")
    assert stated == journal.body_sha256(body) == records[1].sha256


@pytest.mark.parametrize("value", [datetime(2026, 3, 2, 10, 11, 12, 1, tzinfo=timezone.utc),
                                   datetime(2026, 3, 2, 10, 11, 12, tzinfo=timezone.utc),
                                   datetime(2026, 3, 2, 10, 11, 12, 999999)])
def test_timestamps_round_trip_exactly(value: datetime) -> None:
    text = journal.timestamp_text(value)
    assert text.endswith("+00:00") and len(text.split(".")[1]) == len("999999+00:00")
    assert journal.parse_timestamp(text) == value.replace(tzinfo=value.tzinfo or timezone.utc)


# ------------------------------------------------------------------------------------------------ damage


def flip(path: Path, offset: int, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for index in range(offset, min(offset + count, len(data))):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_stored_rows(db: Path) -> int:
    """Flip bytes where the rows are stored: at an occurrence of the reasons' MARKER that DuckDB reads (older
    copies of the rows sit in free blocks too). Returns the offset."""
    original = db.read_bytes()
    offset = original.find(b"MARKER")
    while offset >= 0:
        flip(db, offset)
        try:
            duckdb.connect(str(db), read_only=True).execute("SELECT * FROM champion_events").fetchall()
        except duckdb.Error as error:
            assert "corrupt" in str(error).lower() or "checksum" in str(error).lower(), error
            return offset
        db.write_bytes(original)
        offset = original.find(b"MARKER", offset + 1)
    raise AssertionError("no stored copy of the rows is read by DuckDB")


def damage(reg: ModelRegistry, kind: str) -> None:
    if kind == "truncated to 4 KiB":
        with open(reg.db_path, "r+b") as handle:
            handle.truncate(4096)
    elif kind == "deleted":
        reg.db_path.unlink()
    else:
        flip_stored_rows(reg.db_path)


DAMAGE = ["truncated to 4 KiB", "deleted", "bytes flipped where the rows are stored"]


def every_method(reg: ModelRegistry, model_files: list[Path]) -> dict:
    return {
        "open": lambda: ModelRegistry(reg.root, lock_timeout_seconds=5),
        "current_champion": reg.current_champion,
        "get": lambda: reg.get(1),
        "versions": reg.versions,
        "events": reg.events,
        "history": reg.history,
        "to_dict": reg.to_dict,
        "load_model": reg.load_model,
        "promote": lambda: promote(reg, model_files[0], 0),
        "rollback": lambda: reg.rollback(2, run_id="ops-2", reason="again"),
    }


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_registry_fails_every_method_with_one_line_and_rebuild_restores_it_exactly(
        history: ModelRegistry, model_files, capsys, kind) -> None:
    before = snapshot(history)
    damage(history, kind)
    damaged_bytes = None if kind == "deleted" else history.db_path.read_bytes()

    for name, method in every_method(history, model_files).items():
        with pytest.raises(RegistryDamagedError) as caught:
            method()
        message = str(caught.value)
        assert "\n" not in message, name
        assert str(history.db_path) in message and REBUILD in message, (name, message)
        assert ("is missing but the journal" in message and "has 4 events" in message) if kind == "deleted" \
            else "is damaged" in message, (name, message)
    assert not history.db_path.exists() if kind == "deleted" else history.db_path.read_bytes() == damaged_bytes

    data_dir = str(history.root.parent)
    for argv in (["champion"], ["champion", "--json"]):
        code, out, err = run_cli(capsys, "--data-dir", data_dir, *argv)
        assert (code, out) == (2, "") and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("error: the registry file ") and REBUILD in err

    code, out, err = run_cli(capsys, "--data-dir", data_dir, "registry", "verify")
    assert code == 1 and "NOT consistent (1 problem)" in out and REBUILD in out and err == ""

    code, out, err = run_cli(capsys, "--data-dir", data_dir, "registry", "rebuild")
    assert (code, err) == (0, "") and out.count("\n") == 1
    assert out.startswith(f"rebuilt {history.db_path} from the journal: 4 events, 3 versions, champion v1")

    assert snapshot(ModelRegistry(history.root)) == before
    asides = sorted(history.root.glob("registry.duckdb.damaged-*"))
    if kind == "deleted":
        assert asides == [] and "(registry.duckdb was missing)" in out
    else:
        assert len(asides) == 1 and asides[0].read_bytes() == damaged_bytes and f"kept as {asides[0]}" in out
    code, out, _ = run_cli(capsys, "--data-dir", data_dir, "registry", "verify")
    assert code == 0 and out.count("\n") == 1 and "consistent - 4 events, 3 versions, champion v1" in out
    # and the rebuilt registry takes the next change as if nothing had happened
    assert promote(ModelRegistry(history.root), model_files[1], 1).version == 4
    assert verify_registry(history.root).ok


def test_flipped_bytes_in_the_middle_of_the_file_are_never_a_wrong_answer(history: ModelRegistry) -> None:
    """What DuckDB does with flipped bytes: every 256 KiB block it reads carries a checksum, so a flip where the
    rows are stored fails with 'Corrupt database file: computed checksum ... does not match' (the test above).
    The middle of the file is usually a free block (the file is ~2.3 MB for a few rows: blocks of earlier
    checkpoints) that DuckDB never reads: the flip goes unnoticed and harms nothing. Either way, no reader ever
    gets different rows."""
    before = snapshot(history)
    size = history.db_path.stat().st_size
    flip(history.db_path, size // 2, 64)
    try:
        after = snapshot(ModelRegistry(history.root))
    except RegistryDamagedError as error:
        assert REBUILD in str(error)
        rebuild_registry(history.root)
        after = snapshot(ModelRegistry(history.root))
    assert after == before
    assert verify_registry(history.root).ok


def test_damage_found_by_a_query_after_connecting_is_also_registry_damaged(history, monkeypatch) -> None:
    """DuckDB may notice a bad block only when a query reads it: that too becomes RegistryDamagedError."""
    def corrupt(*args, **kwargs):
        raise duckdb.Error("Corrupt database file: computed checksum 1 does not match stored checksum 2 in block 3")

    monkeypatch.setattr(ModelRegistry, "_versions", lambda self, connection: corrupt())
    with pytest.raises(RegistryDamagedError, match=r"is damaged \(Corrupt database file"):
        history.versions()


# ------------------------------------------------------------------------------------------------ verify


def test_verify_a_consistent_registry(history: ModelRegistry, capsys) -> None:
    code, out, err = run_cli(capsys, "--data-dir", str(history.root.parent), "registry", "verify")
    assert (code, err) == (0, "")
    assert out == (f"registry {history.root}: consistent - 4 events, 3 versions, champion v1; 4 journal records, "
                   "checksums and chain valid; 3 model files match their sha256\n")


def test_verify_detects_a_tampered_record_and_journal_repairs_it(history: ModelRegistry, capsys) -> None:
    path = history.journal.dir / "00000002-promote-v2.json"
    record = json.loads(path.read_text())
    record["event"]["reason"] = "edited"
    path.write_text(json.dumps(record))
    code, out, _ = run_cli(capsys, "registry", "verify", "--registry", str(history.root))
    assert code == 1 and "00000002-promote-v2.json: checksum mismatch" in out
    assert "refresh-assets registry journal" in out  # registry.duckdb is fine: the journal is repaired from it

    history.db_path.unlink()  # and now the database is lost too: a rebuild must not trust that journal
    code, out, err = run_cli(capsys, "registry", "rebuild", "--registry", str(history.root))
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert "fails verification" in err and "checksum mismatch" in err
    assert ("`--force` rebuilds from its first 1 events and sets aside 00000002-promote-v2.json, "
            "00000003-promote-v3.json, 00000004-rollback-v1.json") in err
    assert not history.db_path.exists()


def test_journal_rewrites_a_tampered_record_from_the_database(history: ModelRegistry, capsys) -> None:
    original = (history.journal.dir / "00000003-promote-v3.json").read_bytes()
    (history.journal.dir / "00000003-promote-v3.json").write_bytes(original.replace(b"algo_2", b"algo_X"))
    code, out, _ = run_cli(capsys, "registry", "journal", "--registry", str(history.root))
    assert code == 0 and "wrote 1 journal record(s)" in out and "kept in" in out
    assert (history.journal.dir / "00000003-promote-v3.json").read_bytes() == original
    assert verify_registry(history.root).ok


def test_a_record_edited_with_a_recomputed_checksum_is_a_difference_to_the_database(history) -> None:
    path = history.journal.dir / "00000004-rollback-v1.json"
    body = json.loads(path.read_text())
    body.pop("sha256")
    body["event"]["reason"] = "rewritten history"
    path.write_text(json.dumps({**body, "sha256": journal.body_sha256(body)}))
    check = verify_registry(history.root)
    assert not check.ok
    assert any("event.reason 'rewritten history' in the journal, 'MARKER v3 drops revenue' in registry.duckdb" in p
               for p in check.problems), check.problems
    with pytest.raises(RegistryRebuildRefused, match="holds events the journal does not"):
        rebuild_registry(history.root)  # registry.duckdb is readable: never silently overwritten
    with pytest.raises(RegistryRebuildRefused, match="disagree"):
        write_journal(history.root)
    write_journal(history.root, force=True)
    assert verify_registry(history.root).ok


def test_verify_detects_a_deleted_middle_record_and_force_keeps_the_intact_prefix(history, capsys) -> None:
    before_first = history.events()[0]
    (history.journal.dir / "00000002-promote-v2.json").unlink()
    check = verify_registry(history.root)
    assert not check.ok
    assert check.problems[0] == "journal: event 2 has no record (deleted?)"

    damage(history, "truncated to 4 KiB")
    with pytest.raises(RegistryRebuildRefused, match="event 2 has no record"):
        rebuild_registry(history.root)
    lines = rebuild_registry(history.root, force=True)
    assert lines[0].startswith(f"rebuilt {history.db_path} from the journal: 1 events, 1 versions, champion v1")
    assert "--force: dropped 2 journal record(s) after event 1" in lines[1]
    rebuilt = ModelRegistry(history.root)
    assert rebuilt.events() == [before_first]
    dropped = next(history.journal.dir.glob("dropped-*"))
    assert sorted(p.name for p in dropped.iterdir()) == ["00000003-promote-v3.json", "00000004-rollback-v1.json"]
    assert verify_registry(history.root).ok


def test_the_chain_catches_a_deleted_record_whose_successors_were_renumbered(history: ModelRegistry) -> None:
    """Deleting event 2 and renumbering 3 and 4 (recomputing their checksums) leaves no gap and no bad checksum:
    only the chain shows that a record is gone."""
    folder = history.journal.dir
    (folder / "00000002-promote-v2.json").unlink()
    for old_id in (3, 4):
        path = next(folder.glob(f"{old_id:08d}-*.json"))
        body = json.loads(path.read_text())
        body.pop("sha256")
        body["event"]["event_id"] = old_id - 1
        record = journal.JournalRecord(body["event"], body["model_version"], body["prev_sha256"],
                                       journal.body_sha256(body))
        path.unlink()
        (folder / record.file_name()).write_bytes(record.to_bytes())
    scan = history.journal.scan()
    assert [r.event_id for r in scan.valid] == [1]
    assert scan.problems[0] == ("journal: the chain is broken at 00000002-promote-v3.json: its prev_sha256 is not "
                                "the sha256 of event 1's record (that record was changed or replaced)")
    assert "chain is broken at 00000003-rollback-v1.json" in scan.problems[1]
    assert not verify_registry(history.root).ok


def test_verify_detects_a_tampered_model_file(history: ModelRegistry, capsys) -> None:
    flip(history.root / "models" / "v2.skops", 200, 1)
    code, out, _ = run_cli(capsys, "registry", "verify", "--registry", str(history.root))
    assert code == 1 and out.count("\n") == 2
    assert "model file models/v2.skops of v2 has sha256" in out and "changed after it was registered" in out
    (history.root / "models" / "v3.skops").unlink()
    assert any("models/v3.skops of v3 is missing" in p for p in verify_registry(history.root).problems)
    damage(history, "deleted")  # a rebuild does not need the model files, but says which are wrong
    lines = rebuild_registry(history.root)
    assert [line.split(":")[0] for line in lines[1:]] == ["warning", "warning"]


def test_events_only_the_database_holds_are_never_lost_by_a_rebuild(history: ModelRegistry, capsys) -> None:
    before = snapshot(history)
    (history.journal.dir / "00000004-rollback-v1.json").unlink()
    check = verify_registry(history.root)
    assert check.problems == [f"events 4 are in registry.duckdb but not in the journal: `refresh-assets registry "
                              f"journal --registry {history.root}` writes them"]
    code, out, err = run_cli(capsys, "registry", "rebuild", "--registry", str(history.root))
    assert code == 1 and "holds events the journal does not (event 4 (rollback v1))" in err
    assert snapshot(ModelRegistry(history.root)) == before
    code, out, _ = run_cli(capsys, "registry", "journal", "--registry", str(history.root))
    assert code == 0 and out.startswith("wrote 1 journal record(s)")
    assert verify_registry(history.root).ok


def test_a_database_older_than_its_journal_is_refused_and_rebuilt(history, tmp_path, model_files) -> None:
    """registry.duckdb restored from an old backup (or recreated empty): the journal knows better."""
    backup = tmp_path / "backup.duckdb"
    shutil.copy2(history.db_path, backup)
    promote(history, model_files[1], 1)
    before = snapshot(history)
    shutil.copy2(backup, history.db_path)
    with pytest.raises(RegistryDamagedError, match=r"has 4 events but the journal .* records events up to 5"):
        ModelRegistry(history.root)
    assert not verify_registry(history.root).ok
    lines = rebuild_registry(history.root)  # nothing lost: the old file's events are all in the journal
    assert "5 events, 4 versions, champion v4; the readable file is kept as" in lines[0]
    assert snapshot(ModelRegistry(history.root)) == before


def test_rebuild_of_a_healthy_registry_changes_nothing(history: ModelRegistry) -> None:
    before, files = snapshot(history), sorted(p.name for p in history.root.iterdir())
    assert rebuild_registry(history.root) == [
        f"nothing to rebuild: {history.db_path} is readable and matches the journal (4 events, 3 versions, "
        "champion v1)"]
    assert snapshot(history) == before and sorted(p.name for p in history.root.iterdir()) == files


# ------------------------------------------------------------------------------------------------ crashes

_CRASHING_PROMOTE = textwrap.dedent("""
    import sys
    from refresh_assets.core.registry import ModelRegistry
    ModelRegistry(sys.argv[1]).promote(sys.argv[2], algorithm="crashed", partition_key="2026-03-10", metrics={},
                                       dataset_hash="c" * 64, run_id="run-crash", reason="never committed")
""")


def crash_a_promote(reg: ModelRegistry, model_file: Path) -> None:
    """SIGKILL inside promote: the model file and the .pending record written, the transaction not committed."""
    env = {**os.environ, "REFRESH_ASSETS_FAULT_POINT": "registry:before_commit"}
    result = subprocess.run([sys.executable, "-c", _CRASHING_PROMOTE, str(reg.root), str(model_file)], env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr


def test_an_interrupted_promote_is_reported_and_then_set_aside(history: ModelRegistry, model_files) -> None:
    """Documented choice: a record whose transaction never committed is dropped (its change never happened:
    the run failed, and a re-run promotes again), never completed."""
    before = snapshot(history)
    crash_a_promote(history, model_files[2])
    assert journal_files(history)[-1] == "00000005-promote-v4.json.pending"
    assert snapshot(history) == before

    check = verify_registry(history.root)
    assert check.ok and check.notes == [
        "event 5 (promote v4) is an interrupted change (its transaction never committed): "
        f"00000005-promote-v4.json.pending is set aside by the next registry write or `{REBUILD}`"]

    again = promote(ModelRegistry(history.root), model_files[2], 2)  # the re-run: same number, fresh record
    assert again.version == 4 and again.run_id == "run-2"
    assert journal_files(history)[-1] == "00000005-promote-v4.json"
    assert history.journal.read(history.journal.dir / "00000005-promote-v4.json").event["run_id"] == "run-2"
    interrupted = history.journal.dir / "interrupted" / "00000005-promote-v4.json.pending"
    assert json.loads(interrupted.read_text())["event"]["run_id"] == "run-crash"  # kept, not deleted
    assert verify_registry(history.root).ok


def test_rebuild_drops_an_interrupted_promote(history: ModelRegistry, model_files) -> None:
    before = snapshot(history)
    crash_a_promote(history, model_files[2])
    damage(history, "truncated to 4 KiB")
    lines = rebuild_registry(history.root)
    assert lines[0].startswith(f"rebuilt {history.db_path} from the journal: 4 events")
    assert lines[1].startswith("set aside 1 interrupted change(s) not known to have committed (event 5 (promote v4))")
    assert snapshot(ModelRegistry(history.root)) == before
    assert verify_registry(history.root).ok and verify_registry(history.root).notes == []


def test_a_committed_change_whose_record_was_not_confirmed(history, model_files, monkeypatch) -> None:
    """A crash (here: an error) between the commit and the rename of the record: the change happened. The next
    registry write confirms the record; verify meanwhile reports it as committed."""
    def failing_confirm(self, pending):
        raise OSError("disk went away")

    with monkeypatch.context() as patch:
        patch.setattr(journal.Journal, "confirm", failing_confirm)
        promoted = promote(history, model_files[2], 2)  # committed: the caller is told it succeeded
    assert promoted.version == 4 and history.current_champion().version == 4
    assert journal_files(history)[-1] == "00000005-promote-v4.json.pending"
    check = verify_registry(history.root)
    assert check.ok and check.events == 5 and check.notes == [
        "event 5 (promote v4) is committed; its record 00000005-promote-v4.json.pending is confirmed by the next "
        "registry write"]
    ModelRegistry(history.root)  # opening read-write settles it
    assert journal_files(history)[-1] == "00000005-promote-v4.json"
    assert verify_registry(history.root).ok and verify_registry(history.root).notes == []


def test_a_failed_transaction_leaves_no_record(history, model_files, monkeypatch) -> None:
    def failing_event_insert(*args, **kwargs):
        raise RuntimeError("insert failed")

    files = journal_files(history)
    monkeypatch.setattr(ModelRegistry, "_insert_event", staticmethod(failing_event_insert))
    with pytest.raises(RuntimeError, match="insert failed"):
        promote(history, model_files[2], 2)
    with pytest.raises(RuntimeError, match="insert failed"):
        history.rollback(2, run_id="ops-2", reason="again")
    assert journal_files(history) == files and verify_registry(history.root).ok


# ------------------------------------------------------------------------------------------------ backfill


def test_a_registry_made_before_the_journal_gets_its_journal_on_first_open(history, capsys) -> None:
    originals = {p.name: p.read_bytes() for p in history.journal.dir.iterdir()}
    shutil.rmtree(history.journal.dir)  # as a registry made before the journal existed
    code, out, _ = run_cli(capsys, "registry", "verify", "--registry", str(history.root))
    assert code == 1 and "the journal" in out and "is missing: registry.duckdb has 4 events" in out
    assert f"refresh-assets registry journal --registry {history.root}" in out

    ModelRegistry(history.root)  # any command or step opening it (read-write) backfills, transparently
    assert {p.name: p.read_bytes() for p in history.journal.dir.iterdir()} == originals  # byte for byte
    assert verify_registry(history.root).ok


def test_the_journal_command_backfills_too(history, capsys) -> None:
    shutil.rmtree(history.journal.dir)
    history.journal.dir.mkdir()
    code, out, _ = run_cli(capsys, "registry", "journal", "--registry", str(history.root))
    # the ModelRegistry the command opens has already backfilled: the command finds it complete
    assert code == 0 and out.startswith(f"the journal {history.journal.dir} already matches registry.duckdb")
    assert verify_registry(history.root).ok


def test_a_damaged_registry_without_a_journal_says_there_is_nothing_to_rebuild_from(history, capsys) -> None:
    shutil.rmtree(history.journal.dir)
    damage(history, "truncated to 4 KiB")
    with pytest.raises(RegistryDamagedError, match="there is no journal") as caught:
        history.versions()
    assert "mv " in str(caught.value)  # the old way out, as the only one
    code, out, err = run_cli(capsys, "registry", "rebuild", "--registry", str(history.root))
    assert (code, out) == (1, "") and "holds no record: there is nothing to rebuild" in err


def test_a_deleted_registry_with_an_empty_history_starts_again(tmp_path) -> None:
    reg = ModelRegistry(tmp_path / "registry")
    reg.db_path.unlink()
    assert reg.current_champion() is None and reg.db_path.exists()


# ------------------------------------------------------------------------------------------------ CLI


def test_registry_command_usage_errors_exit_2(tmp_path, capsys) -> None:
    for argv in (["registry"], ["registry", "verify", "--force"], ["registry", "mend"]):
        with pytest.raises(SystemExit) as caught:
            cli.main(argv)
        assert caught.value.code == 2
    capsys.readouterr()
    code, out, err = run_cli(capsys, "registry", "verify", "--registry", str(tmp_path / "nowhere"))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "no registry at" in err


def test_registry_commands_through_the_console_script(history: ModelRegistry) -> None:
    """As a user runs them: a new process, one line, the exit code."""
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "refresh_assets.cli", "--data-dir", str(history.root.parent),
                               "registry", *argv], capture_output=True, text=True, timeout=120)

    damage(history, "bytes flipped where the rows are stored")
    verify = run("verify")
    assert verify.returncode == 1 and "Corrupt database file" in verify.stdout and REBUILD in verify.stdout
    rebuild = run("rebuild")
    assert rebuild.returncode == 0 and rebuild.stdout.count("\n") == 1 and rebuild.stderr == ""
    verify = run("verify")
    assert verify.returncode == 0 and verify.stdout.count("\n") == 1 and "consistent - 4 events" in verify.stdout
