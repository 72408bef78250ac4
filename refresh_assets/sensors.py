"""Sensors: chain a promotion (or a rollback) to its propagation, and a new drift to a refresh; only event and
run records are read, never data."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

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
    """Run requests for champion_model materializations after ``cursor`` that changed the champion (a promotion
    or a rollback); the new cursor."""
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
        rolled_back = _metadata_value(record, "rolled_back", False)
        if not (_metadata_value(record, "promoted", False) or rolled_back):
            continue
        partition = record.partition_key
        version = _metadata_value(record, "version")
        requests.append(dg.RunRequest(
            # a version is promoted once, but may be rolled back to more than once
            run_key=(f"propagate-{partition}-v{version}-rollback-{record.storage_id}" if rolled_back
                     else f"propagate-{partition}-v{version}"),
            partition_key=partition,
            tags={"refresh_assets/trigger": "rollback" if rolled_back else "promotion",
                  "refresh_assets/champion_version": str(version),
                  "refresh_assets/promoting_run": record.run_id},
        ))
    return requests, last


@dg.sensor(
    job=propagation_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When champion_model promoted (or rolled back to) a version for D, run propagation_job for D "
                "(kept: nothing).",
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


FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING)
DRIFT_REPORT_RUN_TAG = "refresh_assets/drift_report_run"


@dataclass
class DriftCursor:
    """What drift_sensor remembers between ticks: the last report read, and the drift it last answered.

    ``answered`` holds the drifted columns of the report whose refresh answered the current drift episode
    (``answered_run`` is that report's run). A report drifted on those columns only is the same drift; an episode
    ends with a report that found no dataset drift.
    """

    after: int | None = None
    answered: list[str] | None = None
    answered_run: str | None = None
    answered_partition: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> DriftCursor:
        if not raw:
            return cls()
        if raw.isdigit():  # the cursor of the sensor before it remembered episodes: a storage id
            return cls(after=int(raw))
        return cls(**json.loads(raw))

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _drifted_names(record) -> list[str]:
    names = _metadata_value(record, "drifted_column_names")
    return sorted(names) if isinstance(names, list) else []


def _answer_failed(instance: dg.DagsterInstance, report_run: str | None) -> bool:
    """True when every refresh requested for that report has ended without success (the drift is unanswered)."""
    if report_run is None:
        return False
    runs = instance.get_run_records(dg.RunsFilter(job_name="refresh_job", tags={DRIFT_REPORT_RUN_TAG: report_run}))
    return bool(runs) and all(r.dagster_run.status in FAILED for r in runs)


def drift_requests(instance: dg.DagsterInstance, cursor: str | None, min_interval_hours: float,
                   now: float) -> tuple[list[dg.RunRequest], str | None, list[str]]:
    """Refresh requests for drift_report materializations after ``cursor`` that found a NEW drift.

    One refresh answers one drift: a report that drifts on the columns already answered (the same drift,
    persisting) requests nothing, a column drifting that was not answered (a different drift) requests again,
    and a report without drift ends the episode. A failed or canceled answer leaves the drift unanswered.
    Besides: never while a refresh of the partition is queued or running, at most one per
    ``min_interval_hours``. Reads event and run records only (never data). Returns (requests, new cursor,
    reasons for skips).
    """
    from refresh_assets.assets.drift import DRIFT

    state = DriftCursor.parse(cursor)
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(DRIFT), after_storage_id=state.after),
        limit=PROMOTION_BATCH, ascending=True)
    requests: list[dg.RunRequest] = []
    skipped: list[str] = []
    last_trigger = _last_drift_refresh_timestamp(instance)
    for record in result.records:
        state.after = record.storage_id
        partition = record.partition_key
        if not _metadata_value(record, "dataset_drift", False):
            if state.answered is not None:
                skipped.append(f"{partition}: no drift; the drift answered at {state.answered_partition} is over")
            state.answered = state.answered_run = state.answered_partition = None
            continue
        columns = _drifted_names(record)
        same_drift = state.answered is not None and set(columns) <= set(state.answered)
        if same_drift and not _answer_failed(instance, state.answered_run):
            skipped.append(f"{partition}: the same drift ({', '.join(columns) or 'same columns'}) was answered by "
                           f"the refresh of {state.answered_partition}")
            continue
        if any(r.partition_key == partition for r in requests) or _refresh_in_flight(instance, partition):
            skipped.append(f"{partition}: a refresh of this partition is already queued or running")
            continue
        if last_trigger is not None and now - last_trigger < min_interval_hours * 3600:
            skipped.append(f"{partition}: last drift-triggered refresh was "
                           f"{(now - last_trigger) / 3600:.1f}h ago (< {min_interval_hours}h)")
            continue
        new = sorted(set(columns) - set(state.answered or []))
        share = _metadata_value(record, "drift_share")
        requests.append(dg.RunRequest(
            run_key=f"drift-{partition}-{record.storage_id}",
            partition_key=partition,
            tags={"refresh_assets/trigger": DRIFT_TRIGGER, "refresh_assets/drift_share": str(share),
                  "refresh_assets/drifted_columns": ",".join(columns)[:200],
                  "refresh_assets/new_drift": ",".join(new)[:200],
                  DRIFT_REPORT_RUN_TAG: record.run_id},
        ))
        state.answered = sorted(set(columns) | set(state.answered or []))
        state.answered_run, state.answered_partition = record.run_id, partition
        last_trigger = now
    return requests, state.dump() if result.records or cursor else cursor, skipped

@dg.sensor(
    job_name="refresh_job",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When drift_report found a new dataset drift for D, run refresh_job for D (one refresh per drift: "
                "the same drift persisting requests nothing; never while one is in flight, at most one per "
                "min_interval_hours).",
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
