"""The real-time scorer: single-row latency over HTTP and in process, and throughput of 1,000-row requests.

A hist_gb champion (what the demo promotes) is converted to ONNX (``serving/convert.py``) and served by the
scoring service (``python -m refresh_assets.serving.app --artifact DIR``, uvicorn on loopback) in a subprocess.

- ``realtime_latency``: p50 / p99 of single-row ``POST /v1/score`` requests on one keep-alive connection, after a
  warm-up, ``realtime_requests`` requests. Target p99 <= 10 ms. Baseline, in the same run: sklearn
  ``predict_proba`` on one row (what a hand-written Flask scorer would call) against the in-process ONNX call on the
  same row (median of ``realtime_inprocess_calls`` each): target ONNX >= 10x faster. And the scorer killed with
  SIGKILL and started again serves within 3 s (median of 3).
- ``realtime_throughput``: rows/s with 1,000-row requests over HTTP against ``predict_proba`` on the same rows in
  process (one 1,000-row call each): target >= 0.5x. The request body is encoded once before the clock starts, as a
  load generator sends it: the figure is the service's (read, parse, validate, score, answer, and the client reading
  the answer), not Python's ``json.dumps`` on the client (~4 ms of a 1,000-row body here; a client in another
  language pays less). The rate with the client encoding each request (``httpx`` ``json=``) is reported beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from refresh_assets_tests.benchmarks.bench_scoring import CHAMPION_ALGORITHM, champion_and_batch
from refresh_assets_tests.benchmarks.common import Row, log

P99_TARGET_MS = 10.0
INPROCESS_TARGET = 10.0
THROUGHPUT_TARGET = 0.5
RESTART_TARGET_SECONDS = 3.0
BATCH_ROWS = 1000


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                        else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()})
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def serve(folder: Path, port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "refresh_assets.serving.app", "--artifact", str(folder),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the scorer did not come up within 60 s")


def run(size: dict) -> list[Row]:
    import httpx

    from refresh_assets.core.artifacts import load_model
    from refresh_assets.core.scoring import feature_frame
    from refresh_assets.serving import convert
    from refresh_assets.serving.runtime import OnnxScorer
    from refresh_assets_tests.integration.dagster_processes import free_port

    requests = size.get("realtime_requests", 2000)
    calls = size.get("realtime_inprocess_calls", 500)
    with tempfile.TemporaryDirectory(prefix="bench_realtime_") as tmp:
        work = Path(tmp)
        model_path, sha, batch_path = champion_and_batch(work, max(BATCH_ROWS, 5000), size["scoring_players"])
        pipeline = load_model(model_path, sha)
        frame = feature_frame(pd.read_parquet(batch_path), pipeline)
        schema = convert.input_schema(frame, pipeline)
        runtime, onnx_bytes, parity, reason = convert.convert_or_fallback(pipeline, frame)
        if runtime != "onnx":
            raise RuntimeError(f"the {CHAMPION_ALGORITHM} champion did not convert to ONNX: {reason}")
        folder = work / "scorer"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(onnx_bytes)
        (folder / "scorer.json").write_text(json.dumps({
            "version": 1, "algorithm": CHAMPION_ALGORITHM, "model_sha256": sha, "runtime": "onnx",
            "model_file": "model.onnx", "model_file_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "risk_threshold": 0.5, "schema": schema, "parity": parity}))
        scorer = OnnxScorer(onnx_bytes, schema)
        records = _records(frame.head(BATCH_ROWS))
        one = frame.head(1)

        # in process, one row: sklearn predict_proba vs the ONNX session (alternating, median of `calls` each)
        sk_times, onnx_times = [], []
        for _ in range(20):
            pipeline.predict_proba(one)
            scorer.predict_proba1(records[:1])
        for i in range(calls):
            row = frame.iloc[[i % BATCH_ROWS]]
            t0 = time.perf_counter()
            pipeline.predict_proba(row)
            sk_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            scorer.predict_proba1(records[i % BATCH_ROWS:i % BATCH_ROWS + 1])
            onnx_times.append(time.perf_counter() - t0)
        sk_ms, onnx_ms = statistics.median(sk_times) * 1000, statistics.median(onnx_times) * 1000

        port = free_port()
        proc = serve(folder, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for record in records[:100]:  # warm-up
                    client.post("/v1/score", json=record).raise_for_status()
                latencies = []
                for i in range(requests):
                    t0 = time.perf_counter()
                    client.post("/v1/score", json=records[i % len(records)]).raise_for_status()
                    latencies.append((time.perf_counter() - t0) * 1000)
                http_rates, encoding_rates, batch_rates = [], [], []
                body = json.dumps(records).encode()
                headers = {"Content-Type": "application/json"}
                for _ in range(size.get("realtime_batch_repeats", 5)):
                    t0 = time.perf_counter()
                    answer = client.post("/v1/score", content=body, headers=headers)
                    answer.raise_for_status()
                    if len(answer.json()["scores"]) != BATCH_ROWS:
                        raise RuntimeError(f"the scorer answered {len(answer.json()['scores'])} scores for {BATCH_ROWS}")
                    http_rates.append(BATCH_ROWS / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    client.post("/v1/score", json=records).raise_for_status()
                    encoding_rates.append(BATCH_ROWS / (time.perf_counter() - t0))
                    rows = frame.head(BATCH_ROWS)
                    t0 = time.perf_counter()
                    pipeline.predict_proba(rows)
                    batch_rates.append(BATCH_ROWS / (time.perf_counter() - t0))
            # SIGKILL and start again: seconds until /healthz answers with the scorer loaded (3 repeats)
            restarts = []
            for _ in range(3):
                proc.kill()
                proc.wait(timeout=30)
                t0 = time.perf_counter()
                proc = serve(folder, port)
                restarts.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    restart = statistics.median(restarts)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    speedup = sk_ms / onnx_ms
    http_rate, batch_rate = statistics.median(http_rates), statistics.median(batch_rates)
    encoding_rate = statistics.median(encoding_rates)
    log(f"realtime: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {requests} single-row requests; in process one row "
        f"sklearn {sk_ms:.3f} ms vs ONNX {onnx_ms:.3f} ms (x{speedup:.1f}); 1,000-row requests {http_rate:,.0f} rows/s "
        f"vs predict_proba {batch_rate:,.0f} rows/s (x{http_rate / batch_rate:.2f}; x{encoding_rate / batch_rate:.2f} with the "
        f"client's json.dumps per request); parity {parity}")
    return [
        Row(name="realtime_latency",
            what=f"single-row POST /v1/score over loopback HTTP, {requests} requests after warm-up, {CHAMPION_ALGORITHM} "
                 "champion as ONNX",
            value=round(p99, 3), unit="ms (p99)",
            target=f"p99 <= {P99_TARGET_MS:g} ms, in-process ONNX >= {INPROCESS_TARGET:g}x sklearn on one row, "
                   f"serving again <= {RESTART_TARGET_SECONDS:g} s after SIGKILL + restart",
            met=p99 <= P99_TARGET_MS and speedup >= INPROCESS_TARGET and restart <= RESTART_TARGET_SECONDS,
            baseline=round(sk_ms, 4), baseline_what="sklearn predict_proba on one row, in process (ms, median)",
            ratio=round(speedup, 2), ratio_what="sklearn one-row time / ONNX one-row time, in process",
            runs=[{"p50_ms": p50, "p99_ms": p99, "requests": requests, "sklearn_one_row_ms": sk_ms,
                   "onnx_one_row_ms": onnx_ms, "max_abs_diff": parity.get("max_abs_diff"),
                   "restart_seconds": restarts}],
            notes=f"p50 {p50:.2f} ms; ONNX one row {onnx_ms:.3f} ms in process; restart after SIGKILL "
                  f"{restart:.2f} s (median of 3)"),
        Row(name="realtime_throughput",
            what=f"rows/s of {BATCH_ROWS:,}-row POST /v1/score requests over loopback HTTP",
            value=round(http_rate), unit="rows/s", target=f">= {THROUGHPUT_TARGET}x predict_proba in process",
            met=http_rate / batch_rate >= THROUGHPUT_TARGET,
            baseline=round(batch_rate), baseline_what=f"predict_proba on the same {BATCH_ROWS:,} rows in process (rows/s)",
            ratio=round(http_rate / batch_rate, 3), ratio_what="HTTP rows/s / in-process rows/s",
            runs=[{"http_rows_per_s": h, "http_rows_per_s_client_encoding": e, "predict_proba_rows_per_s": b}
                  for h, e, b in zip(http_rates, encoding_rates, batch_rates)],
            notes=f"body encoded once before timing (a load generator's request); with the client's json.dumps per "
                  f"request {encoding_rate:,.0f} rows/s (x{encoding_rate / batch_rate:.2f})"),
    ]
