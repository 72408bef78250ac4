"""Crashes at each step of a refresh and its propagation: nothing a reader sees changes, and a re-run succeeds.

Each case runs one job in a child process that SIGKILLs itself at a named point (``core/faults.py``:
REFRESH_ASSETS_FAULT_POINT), so the crash lands at an exact place with no timing: after a step's output
folder is in place but before ``current.json`` moves (dataset, training, comparison, scoring), and inside
the promotion, after the model file is copied but before the registry's transaction commits. Each case runs
only the steps it needs (asset selection) on the outputs the session's first refresh left. Afterwards
every ``current.json``, the manifest it points at, the registry (champion, versions, events) and the bytes
of every registered model file are exactly as before, and no reader can reach a staging folder.
The state is the session's ``promoted_project`` (champion v1 from partition D).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from refresh_assets_tests.conftest import LIGHT_RUN_CONFIG, PRE_DRIFT

pytestmark = pytest.mark.integration

D = PRE_DRIFT[0]
DECIDE = ["model_comparison", "champion_model"]
#: Marks the run config that must promote (see ``promoting``).
PROMOTING = "promoting"


def promoting(project) -> dict:
    """Comparison config that promotes: only candidates of another algorithm than the champion's may challenge
    (the champion's own candidate is the champion), min_improvement -0.1 passes whatever the scores, and the
    guardrails are opened as far as they go (calibration margin at its maximum, no slices)."""
    champion = project.registry().current_champion().algorithm
    others = [a for a in ("logreg", "random_forest", "hist_gb") if a != champion]
    return {"ops": {"model_comparison": {"config": {"bootstrap_samples": 400, "min_improvement": -0.1,
                                                    "calibration_margin": 0.1, "slice_columns": [],
                                                    "algorithms": others}}}}

DRIVER = r"""
import json, sys
from pathlib import Path
import dagster as dg
from refresh_assets_tests.conftest import make_project
root, warehouse, job, partition, run_config, selection = sys.argv[1:]
project = make_project(Path(root), Path(warehouse))
selection = [dg.AssetKey(a) for a in json.loads(selection)] or None
result = project.defs.resolve_job_def(job).execute_in_process(
    instance=project.instance, partition_key=partition, run_config=json.loads(run_config),
    asset_selection=selection, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


#: Runs a command in a mount namespace of its own where one folder is a read-only bind mount (a real EROFS,
#: which root cannot override the way it overrides chmod); the rest of the machine is untouched.
READ_ONLY = ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
             'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"']


def run_job(project, job: str, run_config: dict, selection: list[str] | None = None,
            fault_point: str | None = None, read_only: Path | None = None) -> int:
    """Run ``job`` for D in a child process on the project's instance; its return code (-9: killed).
    ``read_only``: a folder the child sees mounted read-only."""
    env = {k: v for k, v in os.environ.items() if k != "REFRESH_ASSETS_FAULT_POINT"}
    if fault_point:
        env["REFRESH_ASSETS_FAULT_POINT"] = fault_point
    args = [sys.executable, "-c", DRIVER, str(project.root), str(project.defs.resources["warehouse"].location),
            job, D, json.dumps(run_config), json.dumps(selection or [])]
    if read_only is not None:
        args = [*READ_ONLY, str(read_only), *args]
    return subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600).returncode


def readable_state(project) -> dict:
    """What any reader of D can see: pointers, the manifests they name, the registry and its model bytes."""
    store, registry = project.store(), project.registry()
    outputs = {}
    for asset_dir in sorted(p for p in project.outputs.iterdir() if p.is_dir()):
        pointer = asset_dir / D / "current.json"
        current = store.current(asset_dir.name, D)
        outputs[asset_dir.name] = {
            "pointer": pointer.read_bytes() if pointer.exists() else None,
            "manifest": (current / "manifest.json").read_bytes() if current else None,
        }
    versions = registry.versions()
    return {
        "outputs": outputs,
        "champion": registry.current_champion().to_dict(),
        "versions": [v.to_dict() for v in versions],
        "events": [e.to_dict() for e in registry.events()],
        "model_bytes": {v.version: hashlib.sha256(Path(v.model_path).read_bytes()).hexdigest() for v in versions},
    }


def assert_no_staging_reachable(project) -> None:
    store = project.store()
    for asset_dir in (p for p in project.outputs.iterdir() if p.is_dir()):
        current = store.current(asset_dir.name, D)
        assert current is None or not current.name.startswith("."), current
        for listed in store.list_outputs(asset_dir.name, D):
            assert not listed.name.startswith(".") and (listed / "manifest.json").is_file()


# (step, job, run config, assets run, kill point, outputs an earlier step of the same run may have committed)
CASES = [
    ("dataset", "refresh_job", {}, ["training_dataset"], "training_dataset:renamed", ()),
    ("training", "refresh_job", {"ops": {"candidate_logreg": LIGHT_RUN_CONFIG["ops"]["candidate_logreg"]}},
     ["candidate_logreg"], "candidate_logreg:renamed", ()),
    ("comparison", "refresh_job", PROMOTING, DECIDE, "model_comparison:renamed", ()),
    ("promotion", "refresh_job", PROMOTING, DECIDE, "registry:before_commit", ("model_comparison",)),
    ("scoring", "scoring_job", {}, ["production_scores"], "production_scores:renamed", ()),
]


@pytest.mark.parametrize("step, job, run_config, selection, point, committed_before", CASES,
                         ids=[c[0] for c in CASES])
def test_sigkill_during_a_step_changes_nothing_a_reader_sees(promoted_project, step, job, run_config, selection,
                                                              point, committed_before):
    before = readable_state(promoted_project)
    if run_config == PROMOTING:
        run_config = promoting(promoted_project)
    code = run_job(promoted_project, job, run_config, selection, fault_point=point)
    assert code == -signal.SIGKILL, f"the {step} run was not killed at {point} (exit {code})"
    after = readable_state(promoted_project)
    for asset in committed_before:  # a finished earlier step of the killed run: complete, and now current
        assert after["outputs"][asset] != before["outputs"][asset]
        after["outputs"][asset] = before["outputs"][asset]
    assert after == before
    assert_no_staging_reachable(promoted_project)


def test_after_the_crashes_a_rerun_promotes_and_scores(promoted_project):
    """The crashed promotion left a copied model file behind; the re-run replaces it and lands v2."""
    assert run_job(promoted_project, "refresh_job", promoting(promoted_project), DECIDE) == 0
    registry = promoted_project.registry()
    champion = registry.current_champion()
    assert champion.version == 2 and [e.action for e in registry.events()] == ["promote", "promote"]
    registry.load_model(2)  # its file is the recorded one
    assert run_job(promoted_project, "scoring_job", {}, ["production_scores"]) == 0
    store = promoted_project.store()
    assert store.read_manifest(store.current("production_scores", D))["champion_version"] == 2
    assert_no_staging_reachable(promoted_project)


@pytest.mark.parametrize("job, steps", [("refresh_job", ["training_dataset"]),
                                        ("scoring_job", ["scoring_population"])])
def test_a_read_only_output_folder_fails_the_step_clearly_and_changes_nothing(promoted_project, job, steps):
    """The outputs folder mounted read-only under a running job: the first step that writes fails naming the
    file and the reason (in scoring_job, the population: nothing downstream runs on it), the run fails, and
    every pointer, manifest and registry entry is as before."""
    from refresh_assets.local_runs import failure_summary

    project = promoted_project
    before = readable_state(project)
    runs_before = {r.dagster_run.run_id for r in project.instance.get_run_records()}
    assert run_job(project, job, LIGHT_RUN_CONFIG if job == "refresh_job" else {}, read_only=project.outputs) == 1
    (run,) = [r.dagster_run for r in project.instance.get_run_records()
              if r.dagster_run.run_id not in runs_before and r.dagster_run.job_name == job]
    assert run.status.value == "FAILURE"
    failures = sorted(failure_summary(project.instance, run.run_id))
    assert len(failures) == len(steps), failures  # each step that writes fails on its own, with its own folder
    for step, failure in zip(sorted(steps), failures):
        assert failure.startswith(f"step {step} failed"), failures
        assert f"cannot start a new {step} output for {D} in {project.outputs / step / D}: the file system is " \
               "read-only; nothing was written, the current output is unchanged" in failure, failures
    assert readable_state(project) == before
    assert_no_staging_reachable(project)


LOCK_HOLDER = r"""
import select, sys
import duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
select.select([sys.stdin], [], [], 300)
con.close()
"""


def test_a_warehouse_locked_beyond_the_retry_limit_fails_cleanly_with_one_alert(promoted_project, tmp_path,
                                                                                monkeypatch):
    """N transient failures > the retry limit: the dataset step fails after limit + 1 attempts, nothing
    downstream runs, nothing changes, and failure_alert_sensor writes exactly one alert. (N below the limit
    succeeding is test_postgres_ops' locked-warehouse test.)"""
    import dagster as dg

    from refresh_assets.alerts import failure_alert_sensor
    from refresh_assets.assets import dataset

    monkeypatch.setattr(dataset, "TRANSIENT_RETRIES", 1)
    monkeypatch.setattr(dataset, "TRANSIENT_WAIT_SECONDS", 0.1)
    alert_file = tmp_path / "alerts.jsonl"
    for name in ("REFRESH_ASSETS_ALERT_WEBHOOK_URL", "REFRESH_ASSETS_SLACK_TOKEN", "REFRESH_ASSETS_SLACK_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFRESH_ASSETS_ALERT_FILE", str(alert_file))
    project = promoted_project
    repo = project.defs.get_repository_def()

    def tick(cursor):
        return failure_alert_sensor.evaluate_tick(
            dg.build_sensor_context(instance=project.instance, repository_def=repo, cursor=cursor))

    before = readable_state(project)
    cursor = tick(None).cursor
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(project.defs.resources["warehouse"].location)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = project.defs.resolve_job_def("refresh_job").execute_in_process(
            instance=project.instance, partition_key=D, run_config=LIGHT_RUN_CONFIG, raise_on_error=False)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events if e.step_key == "training_dataset"]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds[-1] == "STEP_FAILURE", kinds
    assert {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"} == {"training_dataset"}
    assert readable_state(project) == before
    for _ in range(3):  # more ticks find nothing new
        cursor = tick(cursor).cursor
    alerts = [json.loads(line) for line in alert_file.read_text().splitlines()]
    assert len(alerts) == 1, alerts
    assert (alerts[0]["run_id"], alerts[0]["failing_step"]) == (result.run_id, "training_dataset")
    assert "lock" in alerts[0]["error"].lower()
