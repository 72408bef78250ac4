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
