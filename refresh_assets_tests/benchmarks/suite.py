"""Run the benchmark suite and publish it: ``data/bench/results.json`` and ``docs/BENCHMARKS.md``.

    python -m refresh_assets_tests.benchmarks.suite [--size full|quick|tiny] [--only NAME ...]
                                                    [--out data/bench] [--docs docs/BENCHMARKS.md]

``make bench`` runs the full sizes (the issue's targets are about them; expect an hour on 2 cores),
``make bench-quick`` the quick ones (a few minutes, a sanity check: figures at these sizes are not the
targets' figures). Every comparison is a ratio against a baseline measured in the same run. A benchmark
that fails is recorded as a row with ``met: false`` and its error, and the suite goes on.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from refresh_assets_tests.benchmarks.common import REPO, SIZES, Row, log, machine, now_iso, versions

#: module -> the rows it produces, in the order of the issue's table.
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "bench_refresh": ("refresh_inprocess", "refresh_multiprocess", "refresh_peak_memory"),
    # after bench_refresh: at the quick and tiny sizes its 600-player repeats are repeats of this row too
    "bench_small_refresh": ("refresh_small_inprocess", "refresh_small_multiprocess"),
    "bench_dataset": ("dataset_build",),
    "bench_incremental": ("dataset_incremental",),
    "bench_drift_row": ("drift_check",),
    "bench_load": ("code_location_load",),
    "bench_scoring": ("batch_scoring",),
    "bench_realtime": ("realtime_latency", "realtime_throughput"),
    "bench_daily_scoring": ("daily_scoring",),
    "bench_backfill": ("backfill_flatness",),
    "bench_sensor": ("sensor_tick",),
    "bench_scale": ("refresh_scale",),  # after bench_refresh: reuses its 200k in-process figures of the same run
}
ANALYSIS = Path(__file__).with_name("ANALYSIS.md")
ROW_ORDER = ("refresh_inprocess", "refresh_multiprocess", "refresh_small_inprocess", "refresh_small_multiprocess",
             "dataset_build", "dataset_incremental", "drift_check", "code_location_load",
             "batch_scoring", "realtime_latency", "realtime_throughput", "daily_scoring", "backfill_flatness", "sensor_tick", "refresh_peak_memory", "refresh_scale")


def _failed_rows(names: tuple[str, ...], error: BaseException) -> list[Row]:
    message = "".join(traceback.format_exception_only(type(error), error)).strip()
    return [Row(name=name, what="benchmark failed", value=float("nan"), unit="", target="", met=False,
                notes=f"FAILED: {message}") for name in names]


def run_suite(size_name: str, only: list[str] | None = None) -> dict:
    size = SIZES[size_name]
    started = time.perf_counter()
    result = {"machine": machine(), "versions": versions(), "date": now_iso(), "size": size_name,
              "sizes": size, "rows": []}
    rows: dict[str, Row] = {}
    for module_name, names in BENCHMARKS.items():
        if only and not any(n in only for n in names) and module_name not in only:
            continue
        log(f"{module_name} ({size_name}) ...")
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"refresh_assets_tests.benchmarks.{module_name}")
            # a module may read the rows measured before it in this run (bench_scale: bench_refresh's 200k)
            measured = module.run(size, dict(rows)) if getattr(module, "READS_EARLIER_ROWS", False) else module.run(size)
            for row in measured:
                rows[row.name] = row
        except Exception as error:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            for row in _failed_rows(names, error):
                rows[row.name] = row
        log(f"{module_name} done in {time.perf_counter() - t0:.0f}s")
    result["rows"] = [rows[name].to_dict() for name in ROW_ORDER if name in rows]
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if unit == "rows/s":
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _spread(row: dict, key: str) -> str:
    stats = row.get("stats", {}).get(key)
    if not stats:
        return "-"
    return f"{stats['min']:.3g} / {stats['median']:.3g} / {stats['max']:.3g} (n={stats['n']})"


#: the per-run field whose spread the table shows for each row
SPREAD_FIELD = {"refresh_inprocess": "ratio", "refresh_multiprocess": "ratio", "refresh_small_inprocess": "ratio",
                "refresh_small_multiprocess": "ratio", "dataset_build": "speedup",
                "drift_check": "speedup", "code_location_load": "extra_seconds", "batch_scoring": "ratio",
                "daily_scoring": "ratio", "backfill_flatness": "refresh_seconds", "sensor_tick": "steady_seconds",
                "refresh_peak_memory": "peak_rss_gib", "dataset_incremental": "speedup", "refresh_scale": "ratio"}


def markdown(result: dict) -> str:
    m, v = result["machine"], result["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench{'-quick' if result['size'] == 'quick' else ''}` "
        f"(`python -m refresh_assets_tests.benchmarks.suite --size {result['size']}`) on {result['date']}; "
        f"the suite took {result['seconds']:.0f} s. Raw figures, every repeat included: `data/bench/results.json`.",
        *([f"Measured in parts (`--only`), started at {', '.join(result['partial_runs'])}; each row's baseline "
           "was measured in the same part as its figure.", ""] if result.get("partial_runs") else [""]),
        f"Machine: {m['cpus']} CPUs ({m['cpu'] or 'unknown CPU'}), {m['memory_gib']} GiB, {m['platform']}, "
        f"Python {m['python']}; 1-minute load average at start {m['load_average_1m_at_start']:.2f}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "Every comparison is a ratio against a baseline measured in the same run, in alternation with it.",
        *(["", f"Sizes here are `{result['size']}`: a sanity check that every benchmark runs. The targets are about "
               "`--size full` (`make bench`); at these sizes fixed costs (interpreter start-up, imports, Dagster's "
               "per-run work, Evidently's per-call setup) dominate, so a `no` is expected for the ratio rows."]
          if result["size"] != "full" else []),
        "",
        "| row | what | value | baseline | ratio | target | met | spread of the ratio/figure: min / median / max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        baseline = f"{_fmt(row['baseline'], row['unit'])} ({row['baseline_what']})" if row.get("baseline") is not None else "-"
        ratio = f"{_fmt(row['ratio'])} ({row['ratio_what']})" if row.get("ratio") is not None else "-"
        lines.append(
            f"| `{row['name']}` | {row['what']} | {_fmt(row['value'], row['unit'])} {row['unit']} | {baseline} | "
            f"{ratio} | {row['target']} | {'yes' if row['met'] else '**no**'} | "
            f"{SPREAD_FIELD.get(row['name'], '')}: {_spread(row, SPREAD_FIELD.get(row['name'], ''))} |")
    notes = [(row["name"], row["notes"]) for row in result["rows"] if row.get("notes")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{name}`: {note}" for name, note in notes]
    if ANALYSIS.exists():  # the hand-written reading of the figures: profiles, fixes, what is out of reach
        lines += ["", ANALYSIS.read_text().strip()]
    return "\n".join(lines) + "\n"


def _docs_path(docs: str | None, size: str, out: Path) -> Path:
    return Path(docs) if docs else (REPO / "docs" / "BENCHMARKS.md" if size == "full" else out / f"BENCHMARKS-{size}.md")


def _render(out: Path, docs: str | None) -> int:
    """The Markdown of an earlier run's results.json, with the current ANALYSIS.md."""
    import json

    from refresh_assets.core.artifacts import atomic_write_text

    source = out / "results.json"
    if not source.exists():
        print(f"nothing to render: {source} does not exist (run the suite first)", file=sys.stderr)
        return 2
    result = json.loads(source.read_text())
    path = _docs_path(docs, result["size"], out)
    atomic_write_text(path, markdown(result))
    print(f"wrote {path} from {source}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", nargs="*", help="row or module names to run (default: all)")
    parser.add_argument("--out", default=str(REPO / "data" / "bench"), help="folder for results.json")
    parser.add_argument("--docs", default=None,
                        help="Markdown file to write (default: docs/BENCHMARKS.md for --size full, "
                             "<out>/BENCHMARKS-<size>.md otherwise)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: write the Markdown again from <out>/results.json (after editing ANALYSIS.md)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        return _render(out, args.docs)
    result = run_suite(args.size, args.only)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "results.json"
    if args.only and previous.exists():  # a partial run updates its rows and keeps the others' figures
        import json

        kept = json.loads(previous.read_text())
        if kept.get("size") == args.size:
            fresh = {row["name"]: row for row in result["rows"]}
            merged = {row["name"]: row for row in kept["rows"]} | fresh
            result["rows"] = [merged[name] for name in ROW_ORDER if name in merged]
            result["seconds"] = round(kept.get("seconds", 0) + result["seconds"], 1)
            result["partial_runs"] = kept.get("partial_runs", [kept["date"]]) + [result["date"]]
    from refresh_assets.core.artifacts import atomic_write_json, atomic_write_text

    atomic_write_json(out / "results.json", result)
    docs = _docs_path(args.docs, args.size, out)
    atomic_write_text(docs, markdown(result))
    print(markdown(result))
    print(f"wrote {out / 'results.json'} and {docs}", file=sys.stderr)
    failed = [row["name"] for row in result["rows"] if str(row.get("notes", "")).startswith("FAILED")]
    missed = [row["name"] for row in result["rows"] if not row["met"] and row["name"] not in failed]
    if missed:
        print(f"targets not met at --size {args.size}: {', '.join(missed)}", file=sys.stderr)
    if failed:
        print(f"benchmarks that FAILED to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

