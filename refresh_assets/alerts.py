"""Alert on every failed run of this code location, and on a refresh that succeeded without a candidate that
failed to train; the logic lives in core/alerts.py.

Channels come from the environment only, so that no token or URL is ever part of the definitions:
REFRESH_ASSETS_ALERT_FILE (default <data dir>/alerts/alerts.jsonl, always written),
REFRESH_ASSETS_ALERT_WEBHOOK_URL, REFRESH_ASSETS_SLACK_TOKEN + REFRESH_ASSETS_SLACK_CHANNEL, and
REFRESH_ASSETS_UI_URL for the link to the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from refresh_assets.core.alerts import build_degraded_record, build_record, deliver, error_text

#: How often the daemon looks for new failed runs (seconds); same knob as the other sensors.
ALERT_INTERVAL_SECONDS = int(os.environ.get("REFRESH_ASSETS_SENSOR_INTERVAL_SECONDS", "30"))


def alert_file() -> Path:
    """REFRESH_ASSETS_ALERT_FILE, else <data dir>/alerts/alerts.jsonl."""
    from refresh_assets import settings

    return Path(os.environ.get("REFRESH_ASSETS_ALERT_FILE") or settings.data_dir() / "alerts" / "alerts.jsonl")


def _step_failures(context: dg.RunFailureSensorContext) -> list[tuple[str | None, str | None]]:
    """(step key, innermost error message) per failed step, in the order they failed."""
    failures = []
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        failures.append((event.step_key, error_text(getattr(data, "error", None)) or event.message))
    return failures


WILL_RETRY_TAG = "dagster/will_retry"
#: Dagster stores the run-failure event first and tags the run dagster/will_retry (true/false) right after,
#: so a sensor tick can fall between the two; wait this long for the tag before taking it as "no retry".
WILL_RETRY_WAIT_SECONDS = 10.0


def _will_retry(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether run_retries (dagster.yaml) re-executes this failed run; waits out Dagster's tagging race."""
    import time

    if run.tags.get(WILL_RETRY_TAG) is None and not instance.run_retries_enabled:
        return False
    deadline = time.monotonic() + WILL_RETRY_WAIT_SECONDS
    while run.tags.get(WILL_RETRY_TAG) is None and time.monotonic() < deadline:
        time.sleep(0.25)
        run = instance.get_run_by_id(run.run_id) or run
    return run.tags.get(WILL_RETRY_TAG) == "true"


@dg.run_failure_sensor(
    name="failure_alert_sensor",
    minimum_interval_seconds=ALERT_INTERVAL_SECONDS,
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a run of this code location fails, append it to the alert file and send it to the "
                "webhook / Slack configured in the environment (each channel fails on its own, logged).",
)
def failure_alert_sensor(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    if _will_retry(context.instance, run):
        # run_retries (dagster.yaml) re-executes this run: alert on the last failure only, not on each attempt.
        context.log.info(f"run {run.run_id} failed and will be retried: no alert yet")
        return
    try:
        steps = _step_failures(context)
    except Exception as error:  # the alert matters more than its detail: fall back to the run's message
        context.log.warning(f"could not read step failures of run {run.run_id}: {error}")
        steps = []
    failure = context.failure_event
    run_message = error_text(getattr(failure.event_specific_data, "error", None)) or failure.message
    record = build_record(job=run.job_name, partition=run.tags.get("dagster/partition"), run_id=run.run_id,
                          step_failures=steps, run_failure_message=run_message,
                          ui_url=os.environ.get("REFRESH_ASSETS_UI_URL"))
    _deliver(record, context.log)


def _deliver(record, log) -> None:
    deliver(record, alert_file=alert_file(),
            webhook_url=os.environ.get("REFRESH_ASSETS_ALERT_WEBHOOK_URL"),
            slack_token=os.environ.get("REFRESH_ASSETS_SLACK_TOKEN"),
            slack_channel=os.environ.get("REFRESH_ASSETS_SLACK_CHANNEL"),
            log=log.info, warn=log.error)


def failed_candidates(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(candidate step, why) for every candidate of a run whose ``trained`` check failed."""
    from refresh_assets.assets.candidates import TRAINED_CHECK

    left_out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.check_name == TRAINED_CHECK and not evaluation.passed:
            left_out.append((entry.step_key or evaluation.asset_key.to_user_string(),
                             evaluation.description or "training failed"))
    return left_out


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="candidate_failure_alert_sensor",
    minimum_interval_seconds=ALERT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a refresh succeeds although a candidate failed to train (left out of the comparison, "
                "min_candidates still met), send a DEGRADED alert to the same channels as run failures.",
)
def candidate_failure_alert_sensor(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    left_out = failed_candidates(context.instance, run.run_id)
    if not left_out:
        return
    record = build_degraded_record(job=run.job_name, partition=run.tags.get("dagster/partition"), run_id=run.run_id,
                                   left_out=left_out, ui_url=os.environ.get("REFRESH_ASSETS_UI_URL"))
    _deliver(record, context.log)
