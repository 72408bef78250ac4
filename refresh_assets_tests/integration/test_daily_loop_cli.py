"""The daily loop on the user's path: `refresh-assets` commands in fresh processes, as the README tells a user.

A weekly refresh promotes v1; a following day without a refresh is scored by `refresh-assets score` (it builds
its own scoring population: no dataset of that day exists); a day after the simulated change drifts, and the
same command runs the drift-triggered refresh, which promotes v2 and re-scores the day; `refresh-assets
rollback` brings v1 back and re-scores production with it; a version that does not exist is refused in one
line. (Three days in a row, the same drift persisting and the schedule are test_daily_loop_daemon's: every
command here is a fresh process that imports Evidently, ~6 s of CPU.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import dagster as dg
import pytest

from refresh_assets_tests.conftest import CANDIDATES, LIGHT_RUN_CONFIG, PRE_DRIFT

pytestmark = pytest.mark.integration

QUIET_DAY = "2026-04-08"
DRIFTED_DAY = "2026-06-01"  # six weeks after the simulated change (conftest.DRIFT_DATE)


def light_sets() -> list[str]:
    ops = LIGHT_RUN_CONFIG["ops"]
    return [f"--set={k}={v}" for k, v in {**ops["candidate_logreg"]["config"],
                                          **ops["model_comparison"]["config"]}.items()]


@pytest.fixture(scope="module")
def cli(tmp_path_factory, drift_warehouse):
    data = tmp_path_factory.mktemp("daily_cli")
    env = {key: value for key, value in os.environ.items() if not key.startswith("DAGSTER_")}
    env.update({"REFRESH_ASSETS_WAREHOUSE": str(drift_warehouse), "REFRESH_ASSETS_RETRY_MAX": "0",
                "REFRESH_ASSETS_EXECUTOR": "in_process"})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "refresh_assets.cli", "--data-dir", str(data), *args],
                              env=env, capture_output=True, text=True, timeout=900)

    return run, data


#: A progress line (progress.py): the step, its seconds, its key figure.
PROGRESS_LINE = re.compile(r"^  (?P<step>[a-z_]+) +(?P<seconds>\d+\.\d)s(?:  (?P<figure>.*))?$")


def progress_lines(stdout: str) -> list[tuple[str, str]]:
    """The run headers ("> job ...") and (step, figure) of each progress line, in the order printed."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("  > "):
            out.append((">", line[4:]))
        elif match := PROGRESS_LINE.match(line):
            out.append((match["step"], match["figure"] or ""))
    return out


def scores_manifest(data, day: str) -> dict:
    from refresh_assets.core.artifacts import OutputStore

    store = OutputStore(data / "outputs")
    return store.read_manifest(store.current("production_scores", day))


def test_the_daily_loop_from_the_shell(cli):
    run, data = cli
    first = run("refresh", "--partition", PRE_DRIFT[0], *light_sets())
    assert first.returncode == 0, first.stderr
    assert "champion: v1" in first.stdout
    # progress: each step of the refresh and of the propagation it chains, one line each, as it finished (so
    # before the summary), with its key figure; a pipe gets plain lines only
    assert "\r" not in first.stdout and "\x1b" not in first.stdout
    printed = progress_lines(first.stdout)
    steps = [step for step, _ in printed]
    assert steps[:3] == [">", "training_dataset", "training_dataset_checks"], first.stdout
    assert set(steps[3:6]) == {f"candidate_{a}" for a in CANDIDATES if a != "ensemble"}, first.stdout
    assert steps[6:] == ["candidate_ensemble", "model_comparison", "champion_model", ">", "scoring_population",
                         "champion_shadow_test", "production_scores", "realtime_scorer"], first.stdout
    figures = dict(printed)
    assert printed[0][1].startswith(f"refresh_job {PRE_DRIFT[0]} (run ")
    assert printed[9][1].startswith(f"propagation_job {PRE_DRIFT[0]} (run ") and \
        printed[9][1].endswith("requested by promotion_sensor)")
    assert re.fullmatch(r"train \d+ / holdout \d+ / scoring \d+ rows", figures["training_dataset"])
    assert re.fullmatch(r"passed (\d+)/\1 rules", figures["training_dataset_checks"])
    assert all(re.fullmatch(r"CV ROC AUC 0\.\d{4}", figures[f"candidate_{a}"]) for a in CANDIDATES), figures
    assert figures["model_comparison"].startswith("PROMOTE, best challenger ")
    assert re.fullmatch(r"v1 \(\w+\) promoted", figures["champion_model"])
    assert figures["champion_shadow_test"] == "first champion, nothing to compare"
    assert re.fullmatch(r"\d+ rows scored with v1", figures["production_scores"])
    lines = first.stdout.splitlines()
    assert lines.index(f"== refresh {PRE_DRIFT[0]} ==") > max(
        i for i, line in enumerate(lines) if PROGRESS_LINE.match(line))

    quiet = run("score", "--partition", QUIET_DAY)  # no refresh of this day: scored from its own population
    assert quiet.returncode == 0, quiet.stderr
    assert "production_scores:" in quiet.stdout and "scored with v1" in quiet.stdout
    assert "drift_report: dataset drift False" in quiet.stdout, quiet.stdout
    assert "drift-triggered refresh" not in quiet.stdout
    scoring_steps = [step for step, _ in progress_lines(quiet.stdout)]
    assert scoring_steps[:2] == [">", "scoring_population"], quiet.stdout
    assert sorted(scoring_steps[2:]) == ["drift_report", "production_scores"], quiet.stdout  # either order
    assert dict(progress_lines(quiet.stdout))["drift_report"] == "drift no"
    assert not (data / "outputs" / "training_dataset" / QUIET_DAY).exists()
    assert scores_manifest(data, QUIET_DAY)["champion_version"] == 1

    drifted = run("score", "--partition", DRIFTED_DAY, *light_sets())
    assert drifted.returncode == 0, drifted.stderr + drifted.stdout
    assert "drift_report: dataset drift True" in drifted.stdout
    assert f"drift-triggered refresh {DRIFTED_DAY} run" in drifted.stdout
    assert "decision: PROMOTE" in drifted.stdout and "champion: v2" in drifted.stdout
    assert f"propagation {DRIFTED_DAY} run" in drifted.stdout
    assert scores_manifest(data, DRIFTED_DAY)["champion_version"] == 2
    headers = [figure for step, figure in progress_lines(drifted.stdout) if step == ">"]
    assert [h.split(" (")[0] for h in headers] == [f"{job} {DRIFTED_DAY}" for job in
                                                   ("scoring_job", "refresh_job", "propagation_job")], headers
    assert headers[1].endswith("requested by drift_sensor)")
    drift_figures = [figure for step, figure in progress_lines(drifted.stdout) if step == "drift_report"]
    assert len(drift_figures) == 1 and drift_figures[0].startswith("drift YES: "), drift_figures

    unknown = run("rollback", "--version", "99")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [unknown.stderr.strip()]  # one line, no traceback
    assert "has no version 99 (it has v1, v2)" in unknown.stderr

    back = run("rollback", "--version", "1", "--reason", "v2 misbehaves in the CRM")
    assert back.returncode == 0, back.stderr + back.stdout
    assert "champion is now v1" in back.stdout and f"recorded it as {DRIFTED_DAY}'s champion_model" in back.stdout
    assert f"propagation {DRIFTED_DAY} run" in back.stdout
    assert "production_scores: " in back.stdout and "scored with v1" in back.stdout
    assert scores_manifest(data, DRIFTED_DAY)["champion_version"] == 1

    from refresh_assets.core.registry import ModelRegistry

    registry = ModelRegistry(data / "registry")
    assert registry.current_champion().version == 1
    assert [e.action for e in registry.events()] == ["promote", "promote", "rollback"]
    assert registry.events()[-1].reason == "v2 misbehaves in the CRM"

    # Dagster holds the same story as the registry: D's champion_model is the rollback, and its propagation ran
    with dg.DagsterInstance.from_config(str(data / "dagster_home")) as instance:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_model"), asset_partitions=[DRIFTED_DAY]),
            limit=1).records[0]
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert metadata["rolled_back"] is True and metadata["version"] == 1 and metadata["previous_version"] == 2
        rollback_run = instance.get_run_by_id(record.run_id)
        assert rollback_run.job_name == "rollback_job" and rollback_run.tags["refresh_assets/trigger"] == "rollback"
        chained = instance.get_runs(dg.RunsFilter(job_name="propagation_job",
                                                  tags={"refresh_assets/trigger": "rollback"}))
        assert [(r.tags["dagster/partition"], r.status) for r in chained] == \
            [(DRIFTED_DAY, dg.DagsterRunStatus.SUCCESS)]
        shadow = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_shadow_test"), asset_partitions=[DRIFTED_DAY]),
            limit=1).records[0].asset_materialization.metadata
        assert shadow["previous_version"].value == 2 and shadow["new_version"].value == 1
        drift_refreshes = instance.get_runs(dg.RunsFilter(job_name="refresh_job",
                                                          tags={"refresh_assets/trigger": "drift"}))
        assert [r.tags["dagster/partition"] for r in drift_refreshes] == [DRIFTED_DAY]
