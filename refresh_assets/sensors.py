"""Sensors: chain a promotion to its propagation; only event records are read, never data."""

from __future__ import annotations

import os

import dagster as dg

from refresh_assets.assets.champion import CHAMPION
from refresh_assets.jobs import propagation_job

PROMOTION_BATCH = 200
#: How often the daemon evaluates the sensors (seconds); tests lower it.
SENSOR_INTERVAL_SECONDS = int(os.environ.get("REFRESH_ASSETS_SENSOR_INTERVAL_SECONDS", "30"))


def _metadata_value(record, key, default=None):
    entry = record.asset_materialization.metadata.get(key)
    return entry.value if entry is not None else default


def propagation_requests(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    """Run requests for champion_model materializations after ``cursor`` that promoted; the new cursor."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(CHAMPION),
                              after_storage_id=int(cursor) if cursor else None),
        limit=PROMOTION_BATCH,
        ascending=True,
    )
    requests = []
    last = cursor
    for record in result.records:
        last = str(record.storage_id)
        if not _metadata_value(record, "promoted", False):
            continue
        partition = record.partition_key
        version = _metadata_value(record, "version")
        requests.append(dg.RunRequest(
            run_key=f"propagate-{partition}-v{version}",
            partition_key=partition,
            tags={"refresh_assets/trigger": "promotion", "refresh_assets/champion_version": str(version),
                  "refresh_assets/promoting_run": record.run_id},
        ))
    return requests, last


@dg.sensor(
    job=propagation_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When champion_model promoted a new version for D, run propagation_job for D (kept: nothing).",
)
def promotion_sensor(context: dg.SensorEvaluationContext):
    requests, cursor = propagation_requests(context.instance, context.cursor)
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new promotion"), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
DRIFT_TRIGGER = "drift"


class DriftTriggerPolicy(dg.ConfigurableResource):
    """How eagerly drift rebuilds the model: at most one drift-triggered refresh per interval."""

    min_interval_hours: float = float(os.environ.get("REFRESH_ASSETS_DRIFT_MIN_INTERVAL_HOURS", "24"))


def _refresh_in_flight(instance: dg.DagsterInstance, partition: str) -> bool:
    runs = instance.get_run_records(
        dg.RunsFilter(job_name="refresh_job", statuses=IN_FLIGHT, tags={"dagster/partition": partition}), limit=1)
    return bool(runs)


def _last_drift_refresh_timestamp(instance: dg.DagsterInstance) -> float | None:
    records = instance.get_run_records(
        dg.RunsFilter(job_name="refresh_job", tags={"refresh_assets/trigger": DRIFT_TRIGGER}), limit=1)
    return records[0].create_timestamp.timestamp() if records else None


def drift_requests(instance: dg.DagsterInstance, cursor: str | None, min_interval_hours: float,
                   now: float) -> tuple[list[dg.RunRequest], str | None, list[str]]:
    """Refresh requests for drift_report materializations after ``cursor`` that found drift.

    Reads event and run records only (never data). Returns (requests, new cursor, reasons for skips).
    """
    from refresh_assets.assets.drift import DRIFT

    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(DRIFT), after_storage_id=int(cursor) if cursor else None),
        limit=PROMOTION_BATCH, ascending=True)
    requests: list[dg.RunRequest] = []
    skipped: list[str] = []
    last = cursor
    last_trigger = _last_drift_refresh_timestamp(instance)
    for record in result.records:
        last = str(record.storage_id)
        if not _metadata_value(record, "dataset_drift", False):
            continue
        partition = record.partition_key
        if any(r.partition_key == partition for r in requests) or _refresh_in_flight(instance, partition):
            skipped.append(f"{partition}: a refresh of this partition is already queued or running")
            continue
        if last_trigger is not None and now - last_trigger < min_interval_hours * 3600:
            skipped.append(f"{partition}: last drift-triggered refresh was "
                           f"{(now - last_trigger) / 3600:.1f}h ago (< {min_interval_hours}h)")
            continue
        share = _metadata_value(record, "drift_share")
        requests.append(dg.RunRequest(
            run_key=f"drift-{partition}-{record.storage_id}",
            partition_key=partition,
            tags={"refresh_assets/trigger": DRIFT_TRIGGER, "refresh_assets/drift_share": str(share),
                  "refresh_assets/drifted_columns": str(_metadata_value(record, "drifted_columns")),
                  "refresh_assets/drift_report_run": record.run_id},
        ))
        last_trigger = now
    return requests, last, skipped


@dg.sensor(
    job_name="refresh_job",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When drift_report found dataset drift for D, run refresh_job for D (once per report, never "
                "while one is in flight, at most one per min_interval_hours).",
)
def drift_sensor(context: dg.SensorEvaluationContext, drift_policy: DriftTriggerPolicy):
    import time

    requests, cursor, skipped = drift_requests(context.instance, context.cursor, drift_policy.min_interval_hours,
                                               time.time())
    for reason in skipped:
        context.log.info(f"drift found but no refresh requested: {reason}")
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(skipped) or "no new drift"), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
