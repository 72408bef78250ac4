"""The real-time scorer over real HTTP: fuzzed from its /openapi.json, killed and restarted, hot-swapped under load.

Tiny fitted pipelines are promoted in a real registry and published as runtime "skops" folders (as in the unit
tests); the service runs with the real runtime (serving/runtime.py) and, for (b) and (c), as the
`refresh-assets scorer` process.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from refresh_assets.core import artifacts
from refresh_assets.core.registry import ModelRegistry
from refresh_assets.serving import app as serving
from refresh_assets_tests.unit.test_serving_app import ROWS, fit_pipeline, promote, publish

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "refresh-assets"
RESTART_BAR_SECONDS = 3.0
LOAD_SECONDS = 62.0
#: the issue's load, >= 100 req/s for >= 60 s, as an amount of work: the loop runs until both LOAD_SECONDS have
#: passed and LOAD_REQUESTS have been answered, and the swaps come at shares of it. A busy CI machine (four test
#: workers on 2 cores: 35-38 req/s measured) then takes longer instead of failing on a rate; `make bench` measures
#: the rate (realtime_throughput).
LOAD_REQUESTS = 6_200
LOAD_CAP_SECONDS = 400.0
LOAD_THREADS = 6  # requests in flight: on a loaded 2-core machine 4 reached 49 req/s (load average 15)
POLL_SECONDS = 0.2
#: how long after a champion change the service may still answer with the previous version: one poll, plus
#: loading the new scorer (measured well under a second; the measured lag is printed)
STALENESS_SECONDS = POLL_SECONDS + 1.0


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("candidates")
    files = {}
    for seed in (1, 2, 3):
        files[seed] = folder / f"m{seed}.skops"
        artifacts.save_model(fit_pipeline(seed), files[seed])
    return files


def _registry_with_v1(root: Path, model_file: Path) -> ModelRegistry:
    reg = ModelRegistry(root, lock_timeout_seconds=30)
    publish(reg.root, promote(reg, model_file, "run-1"))
    return reg


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir: Path, registry: Path, port: int) -> subprocess.Popen:
    """The scorer as `refresh-assets scorer`, its output appended to <data_dir>/scorer.log: a pipe nobody reads
    would fill (64 KiB) and freeze the server on its next log line."""
    log = open(data_dir / "scorer.log", "ab")
    try:
        return subprocess.Popen([str(CLI), "--data-dir", str(data_dir), "scorer", "--port", str(port),
                                 "--registry", str(registry), "--poll-seconds", str(POLL_SECONDS)],
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()  # the child holds its own descriptor


def _log_tail(data_dir: Path, chars: int = 3000) -> str:
    path = data_dir / "scorer.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no scorer.log)"


def _serving_after(process: subprocess.Popen, port: int, started: float, version: int, timeout: float = 180) -> float:
    """Seconds from ``started`` until /healthz answers 200 with ``version`` and a score request succeeds.

    A generous limit: a clean-clone CI run on 2 cores at load average ~10 (2026-12-06) saw a start take over 30 s;
    how fast it serves again is the realtime_latency benchmark's figure, not this test's."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while True:
            try:
                health = client.get("/healthz")
                if health.status_code == 200 and health.json()["model_version"] == version:
                    scored = client.post("/v1/score", json=ROWS[0])
                    assert scored.status_code == 200 and scored.json()["model_version"] == version, scored.text
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise AssertionError(_log_tail(Path(process.args[2])))
            waited = time.perf_counter() - started
            assert waited < timeout, f"the scorer did not serve within {waited:.0f}s; its log ends:\n" + _log_tail(
                Path(process.args[2]))
            time.sleep(0.02)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------------------------ (a) fuzz


def test_fuzzing_the_openapi_document_finds_no_server_error(tmp_path, model_files):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode

    reg = _registry_with_v1(tmp_path / "registry", model_files[1])
    app = serving.create_app(reg.root, max_rows=50)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        statuses: Counter = Counter()
        failures: list[str] = []

        # valid requests (schema-conforming) and invalid ones (schemathesis' negative mode), half each
        cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=400, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def fuzz(case):
            response = case.call()
            statuses[(case.operation.path, response.status_code)] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r:.300} -> {response.status_code}")
            case.validate_response(response, checks=[not_a_server_error])

        started = time.perf_counter()
        fuzz()
        print(f"\nfuzzed {sum(statuses.values())} requests in {time.perf_counter() - started:.1f}s: "
              f"{dict(sorted(statuses.items()))}")
        assert not failures, failures
        assert any(path == "/v1/score" and status == 200 for path, status in statuses)
        assert any(path == "/v1/score" and status == 422 for path, status in statuses)
    finally:
        app.state.scorer.stop()


# ------------------------------------------------------------------------------------------------ (b) SIGKILL


def test_a_killed_scorer_serves_the_champion_in_force_again_after_a_restart(tmp_path, model_files):
    """SIGKILL, start again: it serves the champion in force; a model file tampered with meanwhile is refused. The seconds it takes are printed here; the 3 s target
    is the realtime_latency benchmark's (a timed assertion would fail on a loaded CI machine: 5.1 s was seen)."""
    reg = _registry_with_v1(tmp_path / "registry", model_files[1])
    v2 = promote(reg, model_files[2], "run-2")  # the champion in force is v2
    publish(reg.root, v2)
    port = _free_port()
    started = time.perf_counter()
    process = _start(tmp_path, reg.root, port)
    try:
        first = _serving_after(process, port, started, version=2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        started = time.perf_counter()
        process = _start(tmp_path, reg.root, port)
        again = _serving_after(process, port, started, version=2)

        # a model file changed on disk while the scorer was down is refused by its sha256 at the next start
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        model = reg.root / "scorers" / "v2" / serving.SKOPS_FILE
        original = model.read_bytes()
        model.write_bytes(original[:-64] + bytes(64))
        process = _start(tmp_path, reg.root, port)
        deadline = time.perf_counter() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                try:
                    health = client.get("/healthz")
                    if health.status_code == 503 and health.json()["pending_version"] == 2:
                        break
                    assert health.status_code != 200, f"a tampered model was served: {health.text}"
                except httpx.TransportError:
                    pass
                assert time.perf_counter() < deadline, "the scorer did not report the tampered model in time"
                time.sleep(0.05)
            assert "sha256" in health.json()["pending_reason"], health.text
            refused = client.post("/v1/score", json=ROWS[0])
            assert refused.status_code == 503, refused.text
        _stop(process)
        model.write_bytes(original)
        started = time.perf_counter()
        process = _start(tmp_path, reg.root, port)
        _serving_after(process, port, started, version=2)
    finally:
        _stop(process)
    print(f"\nscorer serving v2 {first:.2f}s after the first start, {again:.2f}s after SIGKILL + restart "
          f"(target {RESTART_BAR_SECONDS:g}s, measured by `make bench`); a tampered model file refused: "
          f"{health.json()['pending_reason'][:160]}")


# ------------------------------------------------------------------------------------------------ (c) hot swap


def test_hot_swaps_under_load_fail_no_request_and_serve_the_champion(tmp_path, model_files):
    reg = _registry_with_v1(tmp_path / "registry", model_files[1])
    port = _free_port()
    process = _start(tmp_path, reg.root, port)
    _serving_after(process, port, time.perf_counter(), version=1)

    results: list[tuple[float, float, int | None, int]] = []  # (start, end, version, status)
    errors: list[str] = []
    answered: list[int] = []  # one item per answer (len() is atomic): the load's progress
    stop = threading.Event()

    def client_loop(offset: int) -> None:
        mine = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            i = offset
            while not stop.is_set():
                body = ROWS[i % len(ROWS)] if i % 3 else ROWS  # singles and batches
                i += 1
                start = time.perf_counter()
                try:
                    response = client.post("/v1/score", json=body)
                    end = time.perf_counter()
                    version = response.json().get("model_version") if response.status_code == 200 else None
                    mine.append((start, end, version, response.status_code))
                    answered.append(1)
                except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                    errors.append(f"{type(error).__name__}: {error}")
        results.extend(mine)

    # champion history: (version, instant it may have become champion, instant it certainly had)
    changes: list[tuple[int, float, float]] = [(1, float("-inf"), float("-inf"))]
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(LOAD_THREADS)]
    load_started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        # promote v2, promote v3, roll back to v1: each once both this many seconds and this share of the
        # requests are behind (on a quiet machine, at 12, 27 and 42 s)
        plan = [(12, 0.2, 2), (27, 0.45, 3), (42, 0.7, 1)]

        def reached(seconds: float, requests: float) -> bool:
            elapsed = time.perf_counter() - load_started
            return elapsed >= LOAD_CAP_SECONDS or (elapsed >= seconds and len(answered) >= requests)

        for at, share, version in plan:
            while not reached(at, share * LOAD_REQUESTS):
                time.sleep(0.05)
            if version == 1:
                before = time.perf_counter()
                reg.rollback(1, run_id="run-rollback", reason="load test")
            else:
                # publish first (the folder of the version the promote is about to create), then promote
                sha = artifacts.sha256_file(model_files[version])
                staged = type("V", (), {"version": version, "model_path": str(model_files[version]),
                                        "algorithm": "logreg", "model_sha256": sha})
                publish(reg.root, staged)
                before = time.perf_counter()
                assert promote(reg, model_files[version], f"run-{version}").version == version
            changes.append((version, before, time.perf_counter()))
        while not reached(LOAD_SECONDS, LOAD_REQUESTS):
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        duration = time.perf_counter() - load_started
        _stop(process)

    failed = [r for r in results if r[3] != 200]
    rate = len(results) / duration

    def champion_at_some_instant(version: int, start: float, end: float, slack: float) -> bool:
        for index, (champion, may_begin, _) in enumerate(changes):
            next_end = changes[index + 1][2] if index + 1 < len(changes) else float("inf")
            if champion == version and may_begin <= end and next_end + slack >= start:
                return True
        return False

    strict_stale = [r for r in results if not champion_at_some_instant(r[2], r[0], r[1], 0.0)]
    beyond_bound = [r for r in results if not champion_at_some_instant(r[2], r[0], r[1], STALENESS_SECONDS)]
    lags = []
    for version, _, certain in changes[1:]:
        first = min((r[1] for r in results if r[2] == version and r[0] >= certain), default=None)
        lags.append(None if first is None else round(first - certain, 3))
    print(f"\nhot swap under load: {len(results)} requests in {duration:.1f}s ({rate:.0f} req/s), "
          f"{len(failed) + len(errors)} failed; versions {dict(Counter(r[2] for r in results))}; "
          f"swap lag after each change {lags} s; {len(strict_stale)} answers by the previous champion within the "
          f"{STALENESS_SECONDS:.1f}s poll bound, {len(beyond_bound)} beyond it")
    assert not errors and not failed, (errors[:5], failed[:5], _log_tail(tmp_path))
    assert duration >= 60 and len(results) >= LOAD_REQUESTS, (
        f"{len(results)} requests answered in {duration:.0f}s ({rate:.0f} req/s): the load did not reach "
        f"{LOAD_REQUESTS} requests within {LOAD_CAP_SECONDS:.0f}s")
    assert not beyond_bound, beyond_bound[:5]
    assert all(lag is not None and lag <= STALENESS_SECONDS for lag in lags), lags
