"""One ``drift_sensor`` evaluation on an instance with a long history, against one with a short history.

The daemon evaluates the sensor every 30 s for as long as the deployment lives, so its cost must not grow
with the number of past drift reports and runs. Each instance (SQLite, as ``make ui`` uses) holds N
drift_report materializations (half of them with drift) and N refresh runs (a tenth drift-triggered). The
headline tick is the steady state: the cursor stands just before the newest report, which found drift, so the
tick reads it, checks for a refresh in flight and for the last drift-triggered refresh, and requests one.
The cold tick (no cursor: the first evaluation ever, reading a full batch) is reported beside it.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time

import dagster as dg

from refresh_assets_tests.benchmarks.common import Row, log, with_stats

TARGET_RATIO = 2.0
TARGET_SECONDS = 0.5


def _populated_instance(root: str, history: int) -> tuple[dg.DagsterInstance, str]:
    from dagster._core.test_utils import create_run_for_test

    instance = dg.DagsterInstance.local_temp(root)
    first = dt.date(2026, 1, 1)
    for i in range(history):
        partition = str(first + dt.timedelta(days=i % 120))
        tags = {"dagster/partition": partition, "refresh_assets/kind": "refresh"}
        if i % 10 == 0:
            tags["refresh_assets/trigger"] = "drift"
        create_run_for_test(instance, job_name="refresh_job", status=dg.DagsterRunStatus.SUCCESS, tags=tags)
    for i in range(history):
        partition = str(first + dt.timedelta(days=i % 120))
        drifted = i % 2 == 1 or i == history - 1
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="drift_report", partition=partition,
            metadata={"dataset_drift": drifted, "drift_share": 0.6 if drifted else 0.1, "drifted_columns": 3}))
    records = instance.fetch_materializations(dg.AssetKey("drift_report"), limit=2).records
    before_newest = str(records[1].storage_id)  # newest first: the cursor that leaves one new report
    return instance, before_newest


def _tick_seconds(instance: dg.DagsterInstance, cursor: str | None) -> tuple[float, int]:
    from refresh_assets.sensors import DriftTriggerPolicy, drift_sensor

    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"drift_policy": DriftTriggerPolicy(min_interval_hours=0)})
    start = time.perf_counter()
    result = drift_sensor(context)
    seconds = time.perf_counter() - start
    return seconds, len(result.run_requests or [])


def _measure(histories: tuple[int, int], repeats: int) -> dict[int, dict]:
    """Ticks on the two instances in alternation (small, large, small, large, ...): machine noise then hits
    both histories alike instead of one block of measurements."""
    with tempfile.TemporaryDirectory(prefix="bench_sensor_") as root:
        for h in histories:
            os.mkdir(os.path.join(root, str(h)))
        instances = {h: _populated_instance(os.path.join(root, str(h)), h) for h in histories}
        for instance, cursor in instances.values():
            _tick_seconds(instance, cursor)  # first call: imports, SQLite page cache
        steady = {h: [] for h in histories}
        cold = {h: [] for h in histories}
        for i in range(repeats):
            for h in (histories if i % 2 == 0 else histories[::-1]):
                instance, cursor = instances[h]
                steady[h].append(_tick_seconds(instance, cursor))
                if i % 2 == 0:
                    cold[h].append(_tick_seconds(instance, None)[0])
        for instance, _ in instances.values():
            instance.dispose()
    assert all(n == 1 for ticks in steady.values() for _, n in ticks), "the steady tick must request one refresh"
    return {h: {"steady": [s for s, _ in steady[h]], "cold": cold[h]} for h in histories}


def run(size: dict) -> list[Row]:
    small, large, repeats = size["sensor_baseline"], size["sensor_history"], size["sensor_repeats"]
    measured = _measure((small, large), repeats)
    base, big = measured[small], measured[large]
    runs = [{"history": large, "steady_seconds": b, "baseline_history": small, "baseline_steady_seconds": s}
            for b, s in zip(big["steady"], base["steady"])]
    value = statistics.median(big["steady"])
    baseline = statistics.median(base["steady"])
    ratio = value / baseline
    cold_value, cold_base = statistics.median(big["cold"]), statistics.median(base["cold"])
    log(f"drift_sensor tick: {value * 1000:.1f} ms with {large} reports vs {baseline * 1000:.1f} ms with {small} "
        f"(x{ratio:.2f}); cold tick {cold_value * 1000:.0f} vs {cold_base * 1000:.0f} ms")
    return [with_stats(Row(
        name="sensor_tick",
        what=f"one drift_sensor tick (steady state: one new drifted report) with {large} past drift_report "
             f"materializations and {large} refresh runs in a SQLite instance",
        value=round(value, 4), unit="s", target=f"<= {TARGET_RATIO}x the {small}-record tick and <= {TARGET_SECONDS} s",
        met=ratio <= TARGET_RATIO and value <= TARGET_SECONDS, baseline=round(baseline, 4),
        baseline_what=f"the same tick with {small} past materializations and runs (s)", ratio=round(ratio, 3),
        ratio_what="tick time with the long history / with the short history", runs=runs,
        notes=f"cold tick (no cursor, first evaluation, reads up to one batch of 200 reports): "
              f"{cold_value:.3f} s with {large} vs {cold_base:.3f} s with {small}",
    ))]
