"""Schedules: refresh the latest partition weekly, score the latest partition daily.

Both request the latest complete partition (yesterday, in the schedule's timezone) at the tick's time, so
that a refresh never runs on a day whose data is still arriving. Cron and timezone come from the
environment; both schedules start stopped: turn them on in the UI (Automation) when the data feed is live.
"""

import os

import dagster as dg

from refresh_assets.jobs import refresh_job, scoring_job
from refresh_assets.partitions import daily_partitions

TIMEZONE = os.environ.get("REFRESH_ASSETS_TIMEZONE", "UTC")
REFRESH_CRON = os.environ.get("REFRESH_ASSETS_REFRESH_CRON", "0 4 * * 1")
SCORING_CRON = os.environ.get("REFRESH_ASSETS_SCORING_CRON", "0 6 * * *")


def latest_partition_request(context: dg.ScheduleEvaluationContext, trigger: str) -> dg.RunRequest | dg.SkipReason:
    import datetime as dt

    day = context.scheduled_execution_time.date() - dt.timedelta(days=1)
    if day < daily_partitions.start.date():
        return dg.SkipReason(f"no partition is complete yet (partitions start {daily_partitions.start.date()})")
    key = day.isoformat()
    return dg.RunRequest(run_key=f"{trigger}-{key}", partition_key=key,
                         tags={"refresh_assets/trigger": trigger})


@dg.schedule(job=refresh_job, cron_schedule=REFRESH_CRON, execution_timezone=TIMEZONE,
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Weekly refresh of the latest partition (Monday 04:00 UTC by default).")
def weekly_refresh_schedule(context: dg.ScheduleEvaluationContext):
    return latest_partition_request(context, "weekly_refresh_schedule")


@dg.schedule(job=scoring_job, cron_schedule=SCORING_CRON, execution_timezone=TIMEZONE,
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Daily scoring of the latest partition with the champion in force (06:00 UTC by default).")
def daily_scoring_schedule(context: dg.ScheduleEvaluationContext):
    return latest_partition_request(context, "daily_scoring_schedule")
