"""Loading the code location in a fresh process, against ``import dagster`` alone in a fresh process.

What a webserver, daemon or run worker pays every time it (re)loads the code location. Each repeat runs
the two imports in alternation, in new interpreters, and times the import inside the child (interpreter
start-up is the same for both and left out).
"""

from __future__ import annotations

import json
import statistics
import subprocess

from refresh_assets_tests.benchmarks.common import REPO, Row, log, python, with_stats

TARGET_EXTRA_SECONDS = 1.0
_CHILD = ("import time, json; t = time.perf_counter(); import {module}; "
          "print(json.dumps(time.perf_counter() - t))")


def _import_seconds(module: str) -> float:
    out = subprocess.run([python(), "-c", _CHILD.format(module=module)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def run(size: dict) -> list[Row]:
    _import_seconds("dagster")  # warm the OS file cache once, for both
    runs = []
    for _ in range(size["load_repeats"]):
        base = _import_seconds("dagster")
        full = _import_seconds("refresh_assets.definitions")
        runs.append({"dagster_seconds": base, "definitions_seconds": full, "extra_seconds": full - base,
                     "ratio": full / base})
    extra = statistics.median(r["extra_seconds"] for r in runs)
    base = statistics.median(r["dagster_seconds"] for r in runs)
    log(f"code location load: +{extra:.3f}s over import dagster ({base:.2f}s)")
    return [with_stats(Row(
        name="code_location_load",
        what="import refresh_assets.definitions in a fresh process, seconds more than import dagster",
        value=round(extra, 4), unit="s", target=f"<= {TARGET_EXTRA_SECONDS} s more than import dagster",
        met=extra <= TARGET_EXTRA_SECONDS, baseline=round(base, 4), baseline_what="import dagster (s)",
        ratio=round(statistics.median(r["ratio"] for r in runs), 3),
        ratio_what="definitions import time / dagster import time", runs=runs,
    ))]
