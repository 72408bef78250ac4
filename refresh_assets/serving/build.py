"""Build the real-time scorer of a champion and prove it before it serves (plain Python, no Dagster).

``build_artifact`` writes, into one output folder: the scorer (``model.onnx``, or ``model.skops`` when the
pipeline does not convert or its ONNX scores differ from sklearn's), ``scorer.json`` (version, sha256, runtime,
input schema, risk threshold, parity figures), and a generated conformance test (``test_conformance.py`` with
``conformance_sample.parquet``: a seeded sample of D's rows and their batch scores). ``run_conformance`` runs
that test in a fresh interpreter: it starts the built scorer as a real HTTP server on a free loopback port,
replays the sample, and requires the served scores to equal the batch scores and the latency to meet the bar.
``publish`` copies a folder that passed to ``<registry>/scorers/v<N>/`` (atomically), where the scoring
service (``serving/app.py``) picks it up; a folder that failed is never published, so the service keeps the
previous champion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORER_FILE = "scorer.json"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
SAMPLE_FILE = "conformance_sample.parquet"
TEST_FILE = "test_conformance.py"
RESULT_FILE = "conformance.json"
#: served vs batch score, as the parity check between ONNX and sklearn
MAX_SCORE_DIFF = 1e-4


@dataclass(frozen=True)
class ConformanceSettings:
    """What the generated test demands: how many of D's rows it replays, and the latency bar."""

    sample_rows: int = 200
    latency_requests: int = 200
    p99_ms: float = 10.0
    timeout_seconds: float = 180.0
    seed: int = 0


def risk_threshold(scores) -> float:
    """The lowest batch score flagged top-k: a served score at or above it is a risk flag, as in the batch."""
    flagged = scores.loc[scores["top_k"].astype(bool), "churn_score"]
    return float(flagged.min()) if len(flagged) else 1.0


def build_artifact(folder: Path, pipeline, batch, scores, champion: dict[str, Any],
                   settings: ConformanceSettings, top_k_share: float) -> dict[str, Any]:
    """Write the scorer, its ``scorer.json`` and its conformance test into ``folder``; return scorer.json."""
    import numpy as np

    from refresh_assets.core.scoring import feature_frame
    from refresh_assets.serving import convert

    frame = feature_frame(batch, pipeline)
    schema = convert.input_schema(frame, pipeline)
    runtime, onnx_bytes, parity, reason = convert.convert_or_fallback(pipeline, frame, top_k_share=top_k_share)
    if runtime == "onnx":
        (folder / ONNX_FILE).write_bytes(onnx_bytes)
        model_file_sha256 = hashlib.sha256(onnx_bytes).hexdigest()  # checked by the service before it loads it
    else:  # the registry's own file: the service checks it by the registry's sha256, as every reader does
        shutil.copy2(champion["model_path"], folder / SKOPS_FILE)
        model_file_sha256 = champion["model_sha256"]
    by_key = scores.set_index(["entity_id", "as_of_date"])["churn_score"]
    keyed = batch.set_index(["entity_id", "as_of_date"]).index
    batch_scores = by_key.reindex(keyed).to_numpy()
    if np.isnan(batch_scores).any():
        raise ValueError("production_scores does not score every row of the population: cannot build the sample")
    rng = np.random.default_rng(settings.seed)
    rows = np.sort(rng.choice(len(frame), size=min(settings.sample_rows, len(frame)), replace=False))
    sample = frame.iloc[rows].reset_index(drop=True).copy()
    sample["__batch_score"] = batch_scores[rows]
    sample.to_parquet(folder / SAMPLE_FILE)
    record = {
        "version": int(champion["version"]), "algorithm": champion["algorithm"],
        "model_sha256": champion["model_sha256"], "partition": champion.get("partition"),
        "runtime": runtime, "fallback_reason": reason, "parity": parity,
        "risk_threshold": risk_threshold(scores), "top_k_share": top_k_share,
        "schema": schema, "model_file": ONNX_FILE if runtime == "onnx" else SKOPS_FILE,
        "model_file_sha256": model_file_sha256,
        "conformance": {"sample_rows": int(len(sample)), "latency_requests": settings.latency_requests,
                        "p99_ms": settings.p99_ms, "max_score_diff": MAX_SCORE_DIFF},
    }
    (folder / SCORER_FILE).write_text(json.dumps(record, indent=2, default=str))
    (folder / TEST_FILE).write_text(CONFORMANCE_TEST)
    return record


@dataclass(frozen=True)
class ConformanceResult:
    passed: bool
    seconds: float
    summary: dict[str, Any]
    output: str


def run_conformance(folder: Path, timeout_seconds: float = 180.0) -> ConformanceResult:
    """Run the folder's generated test with pytest in a fresh interpreter (as CI would run it).

    Without the pytest plugins other installed packages register (hypothesis, schemathesis, faker ...): the
    test uses none, and importing them took ~5 of the step's ~9 s on a 600-player refresh.
    """
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "REFRESH_ASSETS_CONFORMANCE_RESULT": str(folder / RESULT_FILE)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir",
         str(folder), "-c", os.devnull, str(folder / TEST_FILE)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=timeout_seconds)
    result_path = folder / RESULT_FILE
    summary = json.loads(result_path.read_text()) if result_path.exists() else {}
    output = (proc.stdout + proc.stderr)[-4000:]
    return ConformanceResult(proc.returncode == 0, time.perf_counter() - t0, summary, output)


def published_dir(registry_root: Path, version: int) -> Path:
    return Path(registry_root) / "scorers" / f"v{int(version)}"


def publish(folder: Path, registry_root: Path, version: int) -> Path:
    """Copy a conformant scorer to ``<registry>/scorers/v<N>/`` atomically: a staged copy renamed into place.
    A version already published is left as it is (the same model, by its sha256)."""
    target = published_dir(registry_root, version)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-v{int(version)}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in (SCORER_FILE, ONNX_FILE, SKOPS_FILE, RESULT_FILE):
        if (folder / name).exists():
            shutil.copy2(folder / name, staging / name)
    for path in staging.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    try:
        os.rename(staging, target)
    except OSError:  # another run published the same version first
        shutil.rmtree(staging, ignore_errors=True)
    return target


#: The generated conformance test: it depends only on the installed package and the files beside it.
CONFORMANCE_TEST = '''"""Conformance of a real-time scorer, generated with it by the realtime_scorer step.

Starts the scorer in this folder as an HTTP server on a free loopback port (``python -m refresh_assets.serving.app
--artifact <this folder>``), replays a sample of the day's rows, and requires the served scores to equal the batch
scores of ``production_scores`` and the single-row latency to meet the bar in ``scorer.json``; prints the figures
(the realtime_scorer step keeps them in ``conformance.json``). Run it again with
``python -m pytest <this folder>/test_conformance.py``: it writes nothing into the folder.
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE / "scorer.json").read_text())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Client:
    """One keep-alive connection, as a caller in production holds one: the latency is the scorer's, not TCP's."""

    def __init__(self, port):
        import http.client

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body):
        self.connection.request("POST", "/v1/score", body=json.dumps(body),
                                headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = response.read()
        assert response.status == 200, (response.status, payload[:500])
        return json.loads(payload)


def _records(frame):
    import pandas as pd

    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else
                        (v.item() if hasattr(v, "item") else v)) for k, v in row.items()})
    return out


def test_the_served_scores_equal_the_batch_scores_within_the_latency_bar():
    port = _free_port()
    # the server starts first: it imports its runtime while this process imports pandas and reads the sample
    server = subprocess.Popen([sys.executable, "-m", "refresh_assets.serving.app", "--artifact", str(HERE),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        import pandas as pd

        sample = pd.read_parquet(HERE / "conformance_sample.parquet")
        expected = sample.pop("__batch_score").to_numpy()
        records = _records(sample)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, server.stdout.read().decode(errors="replace")[-3000:]
            assert time.time() < deadline, "the scorer did not answer /healthz within 60 s"
            time.sleep(0.1)
        client = _Client(port)
        answer = client.post(records)
        served = [row["score"] for row in answer["scores"]]
        assert answer["model_version"] == SPEC["version"]
        assert len(served) == len(expected)
        max_diff = max(abs(a - b) for a, b in zip(served, expected))
        for record in records[:20]:  # warm-up
            client.post(record)
        latencies = []
        for i in range(SPEC["conformance"]["latency_requests"]):
            t0 = time.perf_counter()
            client.post(records[i % len(records)])
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
        summary = {"rows": len(expected), "max_score_diff": max_diff, "p50_ms": round(p50, 3),
                   "p99_ms": round(p99, 3), "p99_bar_ms": SPEC["conformance"]["p99_ms"],
                   "requests": len(latencies), "version": SPEC["version"], "runtime": SPEC["runtime"]}
        print(json.dumps(summary))
        if os.environ.get("REFRESH_ASSETS_CONFORMANCE_RESULT"):  # the realtime_scorer step, before its commit
            Path(os.environ["REFRESH_ASSETS_CONFORMANCE_RESULT"]).write_text(json.dumps(summary, indent=2))
        assert max_diff <= SPEC["conformance"]["max_score_diff"], summary
        assert p99 <= SPEC["conformance"]["p99_ms"], summary
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
'''
