"""Progress lines of the CLI runs (progress.py): each step's line and key figure, the live line only on a terminal,
and the watcher on a real (toy) Dagster run."""

import io
import time

import dagster as dg
import pytest

from refresh_assets.progress import (
    CLEAR_LINE,
    FIGURES,
    FinishedStep,
    Progress,
    StepEvent,
    StepTracker,
    format_run_header,
    format_step,
    live_text,
    new_run_id,
)


class FakeStream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty
        self.written_at: list[tuple[float, str]] = []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.written_at.append((time.monotonic(), text))
        return super().write(text)


def done(step, seconds=1.0, outcome="success", asset=None, metadata=None, checks=(), error=None) -> FinishedStep:
    return FinishedStep(step=step, outcome=outcome, seconds=seconds,
                        materializations={asset or step: metadata} if metadata is not None else {},
                        checks=list(checks), error=error)


# ---------------------------------------------------------------- one line per step


def test_the_dataset_line_is_step_seconds_and_row_counts():
    line = format_step(done("training_dataset", 3.1, metadata={
        "train_rows": 95467, "holdout_rows": 21436, "scoring_rows": 10722, "output_dir": "/x"}))
    assert line == "  training_dataset          3.1s  train 95467 / holdout 21436 / scoring 10722 rows"


@pytest.mark.parametrize("step,metadata,figure", [
    ("candidate_hist_gb", {"cv_roc_auc": 0.92817, "algorithm": "hist_gb"}, "CV ROC AUC 0.9282"),
    ("candidate_random_forest", {"status": "failed", "error": "MemoryError: out of memory"},
     "training failed: MemoryError: out of memory"),
    ("model_comparison", {"decision": "promote", "best_challenger": "hist_gb"}, "PROMOTE, best challenger hist_gb"),
    ("model_comparison", {"decision": "keep", "best_challenger": ""}, "KEEP, best challenger none"),
    ("champion_model", {"action": "promote", "promoted": True, "version": 2, "algorithm": "ensemble"},
     "v2 (ensemble) promoted"),
    ("champion_model", {"action": "keep", "promoted": False, "version": 1, "algorithm": "hist_gb"},
     "v1 (hist_gb) kept"),
    ("champion_model", {"action": "rollback", "promoted": False, "rolled_back": True, "version": 1,
                        "previous_version": 2}, "v1 again (rollback from v2)"),
    ("scoring_population", {"rows": 10715, "entities": 10715}, "10715 rows"),
    ("production_scores", {"rows": 10715, "champion_version": 1}, "10715 rows scored with v1"),
    ("drift_report", {"dataset_drift": False, "drifted_column_names": []}, "drift no"),
    ("drift_report", {"dataset_drift": True, "drifted_column_names": ["channel", "sessions_7d"]},
     "drift YES: channel, sessions_7d"),
    ("champion_shadow_test", {"previous_version": 1, "new_version": 2, "spearman_rank_correlation": 0.98123},
     "rank corr 0.981 (v1 -> v2)"),
    ("champion_shadow_test", {"new_version": 1, "rows": 10722, "note": "no previous champion"},
     "first champion, nothing to compare"),
])
def test_each_step_shows_its_key_figure(step, metadata, figure):
    line = format_step(done(step, 12.04, metadata=metadata))
    assert line == f"  {step:<24} 12.0s  {figure}"


def test_the_dataset_checks_show_the_rules_passed_or_the_failed_rule():
    rules = [("schema", True), ("row_counts", True), ("label_rate", True)]
    assert format_step(done("training_dataset_checks", 0.4, checks=rules)).endswith("0.4s  passed 3/3 rules")
    failing = rules[:2] + [("label_rate", False)]
    line = format_step(done("training_dataset_checks", 0.4, outcome="failure", checks=failing,
                            error="training_dataset refused by 1 rule(s): label_rate ..."))
    assert line.endswith("0.4s  FAILED: failed label_rate (passed 2/3 rules)")


@pytest.mark.parametrize("metadata", [{}, {"cv_roc_auc": "n/a"}, {"cv_roc_auc": None}, {"something": 1}])
def test_missing_or_odd_metadata_prints_step_and_seconds_only(metadata):
    assert format_step(done("candidate_logreg", 2.0, metadata=metadata)) == f"  {'candidate_logreg':<24}  2.0s"
    assert format_step(done("model_comparison", 2.0, metadata=metadata)) == f"  {'model_comparison':<24}  2.0s"
    assert format_step(done("some_new_asset", 2.0, metadata={"rows": 3})) == f"  {'some_new_asset':<24}  2.0s"


def test_a_failed_step_shows_the_first_line_of_its_error_cut_short():
    line = format_step(done("model_comparison", 1.5, outcome="failure", error="only 3 candidate(s)\ntraceback"))
    assert line.endswith("1.5s  FAILED: only 3 candidate(s)")
    long = format_step(done("model_comparison", 1.5, outcome="failure", error="x" * 500))
    assert len(long) < 160 and long.endswith("...")
    skipped = format_step(done("candidate_logreg", None, outcome="skipped"))
    assert skipped == f"  {'candidate_logreg':<24}        skipped"


def test_every_step_of_the_cli_jobs_has_a_figure():
    from refresh_assets.definitions import defs

    for job_name in ("refresh_job", "propagation_job", "scoring_job"):
        for node in defs.resolve_job_def(job_name).graph.node_defs:
            assert (node.name in FIGURES or node.name.startswith("candidate_")
                    or node.name == "training_dataset_checks"), f"{job_name}: no progress figure for {node.name}"


def test_the_run_header_names_job_day_run_and_sensor():
    assert format_run_header("propagation_job", "2026-06-28", "1a2b3c4d-ffff", "promotion_sensor") == \
        "  > propagation_job 2026-06-28 (run 1a2b3c4d, requested by promotion_sensor)"
    assert format_run_header("refresh_job", "2026-06-28", "bff37f4d-0000") == \
        "  > refresh_job 2026-06-28 (run bff37f4d)"


# ---------------------------------------------------------------- events folded into steps


def test_the_tracker_ends_steps_in_event_order_with_their_figures():
    tracker = StepTracker()
    events = [
        StepEvent("STEP_START", "training_dataset", 100.0),
        StepEvent("ASSET_MATERIALIZATION", "training_dataset", 103.0, asset="training_dataset",
                  metadata={"train_rows": 5, "holdout_rows": 2, "scoring_rows": 1}),
        StepEvent("STEP_SUCCESS", "training_dataset", 103.2, seconds=3.1),
        StepEvent("STEP_START", "training_dataset_checks", 103.3),
        StepEvent("ASSET_CHECK_EVALUATION", "training_dataset_checks", 103.5, asset="training_dataset",
                  check="schema", passed=True),
        StepEvent("ASSET_CHECK_EVALUATION", "training_dataset_checks", 103.5, asset="training_dataset",
                  check="label_rate", passed=False),
        StepEvent("STEP_FAILURE", "training_dataset_checks", 103.9, error="refused"),
    ]
    finished = [f for f in (tracker.feed(e) for e in events[:3]) if f]
    assert tracker.running == {}
    tracker.feed(events[3])
    assert tracker.running == {"training_dataset_checks": 103.3}
    finished += [f for f in (tracker.feed(e) for e in events[4:]) if f]
    assert [format_step(f) for f in finished] == [
        "  training_dataset          3.1s  train 5 / holdout 2 / scoring 1 rows",
        "  training_dataset_checks   0.6s  FAILED: failed label_rate (passed 1/2 rules)",  # from the timestamps
    ]
    assert tracker.running == {}


def test_a_retried_step_is_reported_then_timed_from_its_restart():
    tracker = StepTracker()
    assert tracker.feed(StepEvent("STEP_START", "candidate_logreg", 10.0)) is None
    retry = tracker.feed(StepEvent("STEP_UP_FOR_RETRY", "candidate_logreg", 12.0, error="OSError: disk"))
    assert format_step(retry).endswith("2.0s  failed, up for retry: OSError: disk")
    tracker.feed(StepEvent("STEP_RESTARTED", "candidate_logreg", 20.0))
    tracker.feed(StepEvent("ASSET_MATERIALIZATION", "candidate_logreg", 24.0, asset="candidate_logreg",
                           metadata={"cv_roc_auc": 0.9}))
    again = tracker.feed(StepEvent("STEP_SUCCESS", "candidate_logreg", 24.5))
    assert format_step(again).endswith("4.5s  CV ROC AUC 0.9000")


# ---------------------------------------------------------------- terminal or not


def test_without_a_terminal_there_is_never_a_carriage_return_or_an_escape():
    stream = FakeStream(tty=False)
    progress = Progress(stream)
    assert not progress.live
    progress.line("  > refresh_job 2026-06-28 (run bff37f4d)")
    progress.show_live("  ... candidate_hist_gb running 42s")
    progress.step(done("candidate_hist_gb", 42.0, metadata={"cv_roc_auc": 0.93}))
    progress.show_live("  ... model_comparison running 1s")
    progress.clear_live()
    out = stream.getvalue()
    assert "\r" not in out and "\x1b" not in out
    assert out.splitlines() == ["  > refresh_job 2026-06-28 (run bff37f4d)",
                                "  candidate_hist_gb        42.0s  CV ROC AUC 0.9300"]


def test_on_a_terminal_the_live_line_is_rewritten_in_place_and_cleared_before_the_next_line():
    stream = FakeStream(tty=True)
    progress = Progress(stream)
    assert progress.live
    progress.show_live("  ... candidate_hist_gb running 41s")
    progress.show_live("  ... candidate_hist_gb running 41s")  # same second: not written again
    progress.show_live("  ... candidate_hist_gb running 42s")
    progress.step(done("candidate_hist_gb", 42.3, metadata={"cv_roc_auc": 0.93}))
    progress.show_live("  ... model_comparison running 1s")
    progress.clear_live()
    assert stream.getvalue() == (
        "\r  ... candidate_hist_gb running 41s\x1b[K"
        "\r  ... candidate_hist_gb running 42s\x1b[K"
        + CLEAR_LINE + "  candidate_hist_gb        42.3s  CV ROC AUC 0.9300\n"
        + "\r  ... model_comparison running 1s\x1b[K" + CLEAR_LINE)
    assert Progress(FakeStream(tty=True), live=False).live is False  # --verbose: Dagster's log lines would tear it


def test_the_live_line_names_the_running_steps_and_fits_the_terminal():
    assert live_text({}, 50.0) == ""
    assert live_text({"candidate_hist_gb": 8.0}, 50.2) == "  ... candidate_hist_gb running 42s"
    both = live_text({"candidate_hist_gb": 8.0, "candidate_logreg": 40.0}, 50.0)
    assert both == "  ... candidate_hist_gb running 42s, candidate_logreg running 10s"
    assert len(live_text({"candidate_hist_gb": 8.0, "candidate_logreg": 40.0}, 50.0, width=30)) < 30


# ---------------------------------------------------------------- the watcher on a real run


@dg.asset
def training_dataset():
    time.sleep(1.0)  # long enough for the watcher to see the step running
    return dg.MaterializeResult(metadata={"train_rows": 5, "holdout_rows": 2, "scoring_rows": 1})


@dg.asset(deps=[training_dataset])
def candidate_logreg():
    time.sleep(0.6)
    return dg.MaterializeResult(metadata={"cv_roc_auc": 0.8123})


@dg.asset(deps=[candidate_logreg])
def model_comparison():
    raise ValueError("kaput")


TOY_JOB = dg.Definitions(assets=[training_dataset, candidate_logreg, model_comparison],
                         jobs=[dg.define_asset_job("toy_job")]).resolve_job_def("toy_job")


@pytest.mark.parametrize("tty", [False, True])
def test_the_watcher_prints_each_step_of_a_run_as_it_finishes(tmp_path, tty):
    stream = FakeStream(tty)
    progress = Progress(stream, interval=0.1)
    run_id = new_run_id()
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides={"telemetry": {"enabled": False}}) as instance:
        with progress.watch(instance, run_id, "toy_job", "2026-06-28"):
            result = TOY_JOB.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
            run_ended = time.monotonic()
    assert not result.success and result.run_id == run_id
    out = stream.getvalue()
    lines = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in out.split("\n") if line]
    assert lines[0] == f"  > toy_job 2026-06-28 (run {run_id[:8]})"
    assert lines[1].startswith("  training_dataset ") and lines[1].endswith("s  train 5 / holdout 2 / scoring 1 rows")
    assert lines[2].startswith("  candidate_logreg ") and lines[2].endswith("s  CV ROC AUC 0.8123")
    assert lines[3].startswith("  model_comparison ") and lines[3].endswith("s  FAILED: ValueError: kaput")
    assert len(lines) == 4
    # printed as the step finished, not after the run: candidate_logreg alone still took 0.6 s
    dataset_line_at = next(at for at, text in stream.written_at if "train 5 / holdout 2" in text)
    assert dataset_line_at < run_ended - 0.3
    assert out.endswith(lines[3] + "\n")  # no live line left behind
    if tty:
        assert "\r  ... training_dataset running 0s\x1b[K" in out
        # a step line starts a fresh line: after a newline, or after the live line was erased
        assert all(f"\n{line}\n" in out or f"{CLEAR_LINE}{line}\n" in out for line in lines[1:])
    else:
        assert "\r" not in out and "\x1b" not in out


@dg.asset(name="model_comparison")
def refused_comparison():
    raise dg.Failure(description="only 3 candidate(s) trained, fewer than min_candidates=4", allow_retries=False)


def test_a_failure_shows_its_description_not_the_exception_class(tmp_path):
    job = dg.Definitions(assets=[refused_comparison], jobs=[dg.define_asset_job("toy_job")]).resolve_job_def("toy_job")
    stream = FakeStream(tty=False)
    progress = Progress(stream, interval=0.1)
    run_id = new_run_id()
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides={"telemetry": {"enabled": False}}) as instance:
        with progress.watch(instance, run_id, "toy_job"):
            job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
    assert stream.getvalue().splitlines()[-1].endswith(
        "s  FAILED: only 3 candidate(s) trained, fewer than min_candidates=4")
