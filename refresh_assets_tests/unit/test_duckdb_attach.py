"""A file attached to the process's DuckDB (refresh_assets/core/duckdb_attach.py) behaves as a connection to it:
same locks towards other processes, same errors, data on disk once closed, nothing carried between uses."""

import os
import subprocess
import sys
import textwrap

import duckdb
import pytest

from refresh_assets.core.duckdb_attach import attach


def _other_process(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def _try_open(path, read_only: bool) -> str:
    return _other_process(f"""
        import duckdb
        try:
            duckdb.connect({str(path)!r}, read_only={read_only}).close()
            print("opened")
        except duckdb.Error as error:
            print(type(error).__name__, str(error))
    """)


def test_writes_reach_the_file_and_the_lock_is_held_until_close(tmp_path):
    path = tmp_path / "reg.duckdb"
    with attach(path, read_only=False) as con:
        con.execute("CREATE TABLE t (x INTEGER)")  # unqualified names go to the attached file
        con.execute("INSERT INTO t VALUES (1), (2)")
        held = _try_open(path, read_only=True)
    assert held.startswith("IOException") and "lock" in held, held
    assert _try_open(path, read_only=False) == "opened"
    assert not (tmp_path / "reg.duckdb.wal").exists()  # detaching checkpointed the file
    direct = duckdb.connect(str(path), read_only=True)
    try:
        assert direct.execute("SELECT sum(x) FROM t").fetchone() == (3,)
    finally:
        direct.close()


def test_read_only_shares_the_file_with_other_readers_and_refuses_writes(tmp_path):
    path = tmp_path / "reg.duckdb"
    with attach(path, read_only=False) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with attach(path, read_only=True) as con:
        assert _try_open(path, read_only=True) == "opened"
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO t VALUES (2)")


def test_same_errors_as_connect_for_a_lock_a_damaged_and_a_missing_file(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database" * 500)
    for path, read_only in ((bad, False), (tmp_path / "missing.duckdb", True)):
        with pytest.raises(duckdb.Error) as direct:
            duckdb.connect(str(path), read_only=read_only)
        with pytest.raises(duckdb.Error) as attached:
            attach(path, read_only=read_only)
        assert type(attached.value) is type(direct.value)
        assert str(path) in str(attached.value) and str(attached.value) == str(direct.value)

    locked = tmp_path / "locked.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys
        con = duckdb.connect({str(locked)!r})
        print("held", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException, match="lock"):
            attach(locked, read_only=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
    with attach(locked, read_only=True):  # free again once the other process let go
        pass


def test_an_unfinished_transaction_is_rolled_back_and_state_does_not_leak(tmp_path):
    path = tmp_path / "reg.duckdb"
    with attach(path, read_only=False) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    con = attach(path, read_only=False)
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO t VALUES (7)")
    con.execute("SET VARIABLE leaked = 1")
    con.close()
    con.close()  # twice: nothing more
    with attach(path, read_only=True) as again:
        assert again.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert again.execute("SELECT getvariable('leaked')").fetchone() == (None,)
        assert again.execute("SELECT current_database()").fetchone()[0] == again.alias


def test_a_path_with_a_quote(tmp_path):
    path = tmp_path / "it's here.duckdb"
    with attach(path, read_only=False) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS x")
    assert os.path.exists(path)
    with attach(path, read_only=True) as con:
        assert con.execute("SELECT x FROM t").fetchone() == (42,)
