"""The start-up heap is frozen out of the garbage collector's reach (refresh_assets/heap.py): once per process, in
the process that runs refreshes in process, and in the forkserver the multiprocess executor's steps fork from.

Each case runs in a fresh interpreter: freezing is process-wide and must not depend on what the test process did.
"""

import json
import os
import subprocess
import sys
import textwrap

import dagster as dg

from refresh_assets.executors import FORKSERVER_PRELOAD, multiprocess_executor_from_env


def _python(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_heap_is_frozen_once_and_new_garbage_is_still_collected():
    out = _python("""
        import gc, json, weakref
        from refresh_assets.heap import freeze_startup_heap
        before = gc.get_freeze_count()
        first = freeze_startup_heap()
        frozen = gc.get_freeze_count()
        second = freeze_startup_heap()

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle made after the freeze
        alive = weakref.ref(a)
        del a, b
        gc.collect()
        print(json.dumps({"before": before, "first": first, "frozen": frozen, "second": second,
                          "after_second": gc.get_freeze_count(), "cycle_collected": alive() is None}))
    """)
    assert out["before"] == 0 and out["first"] is True and out["frozen"] > 1_000
    assert out["second"] is False and out["after_second"] == out["frozen"]  # not frozen again after start-up
    assert out["cycle_collected"]


def test_the_first_in_process_run_freezes_what_start_up_loaded():
    out = _python("""
        import gc, json
        import dagster as dg
        from refresh_assets.local_runs import _execute

        calls = []
        real_freeze = gc.freeze
        gc.freeze = lambda: calls.append(gc.get_count()) or real_freeze()

        @dg.op
        def one():
            return 1

        job = dg.GraphDefinition(name="one_op", node_defs=[one]).to_job()
        before = gc.get_freeze_count()
        with dg.DagsterInstance.ephemeral() as instance:
            ok = _execute(job, instance, None, None).success
            frozen = gc.get_freeze_count()
            again = _execute(job, instance, None, None).success
        print(json.dumps({"before": before, "ok": ok and again, "frozen": frozen, "freezes": len(calls)}))
    """)
    assert out["ok"] and out["before"] == 0 and out["frozen"] > 100_000  # Dagster and the instance
    assert out["freezes"] == 1  # a later run's objects stay collectable


def test_start_up_runs_without_collections_until_the_first_run_freezes_the_heap():
    out = _python("""
        import gc, json
        from refresh_assets.heap import collection_paused_until_first_run, freeze_startup_heap

        states = {}
        with collection_paused_until_first_run():  # a command that never gets to a run
            states["paused"] = not gc.isenabled()
        states["on_after_a_block_without_a_run"] = gc.isenabled() and gc.get_freeze_count() == 0
        with collection_paused_until_first_run():
            freeze_startup_heap()  # the first run
            states["on_from_the_first_run"] = gc.isenabled() and gc.get_freeze_count() > 0
        with collection_paused_until_first_run():  # once frozen, nothing to pause any more
            states["not_paused_once_frozen"] = gc.isenabled()
        print(json.dumps(states))
    """)
    assert out == {"paused": True, "on_after_a_block_without_a_run": True, "on_from_the_first_run": True,
                   "not_paused_once_frozen": True}


def test_the_cli_pauses_collections_in_a_refresh_command_and_turns_them_on_again_when_it_ends():
    out = _python("""
        import gc, json
        from refresh_assets import cli, config

        seen = []
        real = config.preflight

        def spy(*args, **kwargs):
            seen.append(gc.isenabled())
            return real(*args, **kwargs)

        config.preflight = spy
        code = cli.main(["refresh", "--partition", "1999-01-01"])  # refused before any run: no freeze
        print(json.dumps({"code": code, "enabled_during": seen, "enabled_after": gc.isenabled(),
                          "frozen": gc.get_freeze_count()}))
    """)
    assert out == {"code": 2, "enabled_during": [False], "enabled_after": True, "frozen": 0}


@dg.op
def report_freeze_count() -> None:
    import gc

    with open(os.environ["HEAP_TEST_OUT"], "w") as handle:
        json.dump({"freeze_count": gc.get_freeze_count(), "pid": os.getpid()}, handle)


@dg.job(executor_def=multiprocess_executor_from_env())
def freeze_probe_job():
    report_freeze_count()


def test_step_processes_fork_from_a_frozen_forkserver(tmp_path, monkeypatch):
    assert FORKSERVER_PRELOAD[-1] == "refresh_assets.forkserver_heap"  # last: it freezes what the others loaded
    out_file = tmp_path / "probe.json"
    monkeypatch.setenv("HEAP_TEST_OUT", str(out_file))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.execute_job(dg.reconstructable(freeze_probe_job), instance=instance)
        assert result.success
    probe = json.loads(out_file.read_text())
    assert probe["pid"] != os.getpid()
    # Dagster, the code location, pandas and scikit-learn: far more than a bare interpreter's few thousand objects
    assert probe["freeze_count"] > 100_000, probe
