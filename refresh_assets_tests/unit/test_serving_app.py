"""The real-time scorer's HTTP app (refresh_assets/serving/app.py): validation, order, versions, hot swap.

A real ModelRegistry holds tiny fitted sklearn pipelines; their scorer folders are published here the way
serving/build.py does (staged, then renamed), with runtime "skops"; a stand-in scorer with the runtime's
interface (``predict_proba1(records)``) scores them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from refresh_assets.core import artifacts, models
from refresh_assets.core.registry import ModelRegistry
from refresh_assets.serving import app as serving

NUMERIC = ["sessions_7d", "spend_28d"]
CATEGORICAL = ["channel"]
SCHEMA = {"features": [
    {"name": "sessions_7d", "kind": "number", "categories": [], "nullable": True},
    {"name": "spend_28d", "kind": "number", "categories": [], "nullable": False},
    {"name": "channel", "kind": "text", "categories": ["organic", "paid"], "nullable": True},
]}
ROWS = [{"sessions_7d": 0.0, "spend_28d": 0.0, "channel": "paid"},
        {"sessions_7d": 14.0, "spend_28d": 20.5, "channel": "organic"},
        {"sessions_7d": None, "spend_28d": 3, "channel": None},
        {"sessions_7d": 2.5, "spend_28d": 1.0, "channel": "never-seen"}]


def fit_pipeline(seed: int):
    """A logreg pipeline of the project (imputers, scaler, one-hot) fitted on 200 random rows."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"sessions_7d": rng.poisson(5, 200).astype(float), "spend_28d": rng.exponential(5, 200),
                          "channel": rng.choice(["organic", "paid"], 200).astype(object)})
    sign = 1 if seed % 2 else -1
    label = (sign * (frame["sessions_7d"] - 5) + rng.normal(0, 2, 200) > 0).astype(int)
    return models.build_pipeline("logreg", NUMERIC, CATEGORICAL, seed).fit(frame, label)


class StandInScorer:
    """The interface of runtime.SkopsScorer: the registry's skops file, loaded by sha256, scoring records."""

    def __init__(self, model_path: Path, sha256: str, delay: threading.Event | None = None) -> None:
        self.model = artifacts.load_model(model_path, expected_sha256=sha256)
        self.delay = delay

    def predict_proba1(self, frame_or_records):
        if self.delay is not None:
            self.delay.wait(10)
        frame = pd.DataFrame(list(frame_or_records) if isinstance(frame_or_records, list) else frame_or_records)
        frame = frame.astype({"sessions_7d": "float64", "spend_28d": "float64", "channel": object})
        return self.model.predict_proba(frame)[:, 1]


def stand_in_factory(folder: Path, meta: dict):
    assert meta["runtime"] == "skops" and (folder / serving.SKOPS_FILE).is_file()
    return StandInScorer(folder / serving.SKOPS_FILE, meta["model_sha256"])


def publish(root: Path, version, threshold: float = 0.5, **overrides) -> Path:
    """Write <root>/scorers/v<N>/ as the publishing asset does: a staged folder renamed into place."""
    target = root / "scorers" / f"v{version.version}"
    staging = root / "scorers" / f".staging-v{version.version}"
    staging.mkdir(parents=True)
    shutil.copy2(version.model_path, staging / serving.SKOPS_FILE)
    meta = {"version": version.version, "algorithm": version.algorithm, "model_sha256": version.model_sha256,
            "runtime": "skops", "risk_threshold": threshold, "schema": SCHEMA, "deployable": True, **overrides}
    (staging / serving.SCORER_FILE).write_text(json.dumps(meta))
    os.rename(staging, target)
    return target


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[int, tuple[Path, object]]:
    folder = tmp_path_factory.mktemp("candidates")
    files = {}
    for seed in (1, 2, 3):
        pipeline = fit_pipeline(seed)
        path = folder / f"m{seed}.skops"
        artifacts.save_model(pipeline, path)
        files[seed] = (path, pipeline)
    return files


def promote(reg: ModelRegistry, path: Path, run_id: str):
    return reg.promote(path, algorithm="logreg", partition_key="2026-03-02", metrics={"roc_auc": 0.7},
                       dataset_hash="d" * 64, run_id=run_id, reason="test")


@pytest.fixture()
def reg(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry", lock_timeout_seconds=5)


@pytest.fixture()
def make_client():
    apps = []

    def make(root, **kwargs) -> TestClient:
        kwargs.setdefault("scorer_factory", stand_in_factory)
        kwargs.setdefault("poll_seconds", 0.05)
        app = serving.create_app(root, **kwargs)
        apps.append(app)
        return TestClient(app)

    yield make
    for app in apps:
        app.state.scorer.stop()


@pytest.fixture()
def served_v1(reg, model_files, make_client):
    v1 = promote(reg, model_files[1][0], "run-1")
    publish(reg.root, v1, threshold=0.5)
    return make_client(reg.root), v1


def wait_for(client: TestClient, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/v1/model").json()
        if predicate(body):
            return body
        assert time.monotonic() < deadline, f"timed out; last /v1/model: {body}"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------ scoring


def test_scores_come_back_in_input_order_with_the_version(served_v1, model_files):
    client, v1 = served_v1
    response = client.post("/v1/score", json=ROWS)
    assert response.status_code == 200, response.text
    body = response.json()
    frame = pd.DataFrame(ROWS).astype({"sessions_7d": "float64", "spend_28d": "float64"})
    frame["channel"] = frame["channel"].astype(object)
    expected = model_files[1][1].predict_proba(frame)[:, 1]
    assert body["model_version"] == v1.version == 1
    assert body["n_rows"] == len(ROWS)
    np.testing.assert_allclose([s["score"] for s in body["scores"]], expected, rtol=0, atol=1e-12)
    assert [s["risk"] for s in body["scores"]] == [bool(p >= 0.5) for p in expected]
    reversed_scores = [s["score"] for s in client.post("/v1/score", json=ROWS[::-1]).json()["scores"]]
    np.testing.assert_allclose(reversed_scores, expected[::-1], rtol=0, atol=1e-12)


def test_a_single_record_gives_a_list_of_one(served_v1):
    client, _ = served_v1
    batch = client.post("/v1/score", json=ROWS).json()["scores"]
    for index, row in enumerate(ROWS):
        single = client.post("/v1/score", json=row).json()
        assert single["n_rows"] == 1 and single["model_version"] == 1
        assert len(single["scores"]) == 1 and single["scores"][0]["risk"] == batch[index]["risk"]
        assert single["scores"][0]["score"] == pytest.approx(batch[index]["score"], abs=1e-12)


def test_risk_flags_follow_the_published_threshold(reg, model_files, make_client):
    v1 = promote(reg, model_files[1][0], "run-1")
    publish(reg.root, v1, threshold=0.0)
    scores = make_client(reg.root).post("/v1/score", json=ROWS).json()["scores"]
    assert all(s["risk"] for s in scores)


# ------------------------------------------------------------------------------------------------ refusals


def _row(**changes):
    row = dict(ROWS[1])
    for key, value in changes.items():
        if value is KeyError:
            row.pop(key)
        else:
            row[key] = value
    return row


REFUSALS = [  # (id, raw body, status, row, field, type)
    ("missing feature", json.dumps([ROWS[0], _row(spend_28d=KeyError)]), 422, 1, "spend_28d", "missing"),
    ("unknown feature", json.dumps([_row(level=3)]), 422, 0, "level", "extra_forbidden"),
    ("text for a number", json.dumps([ROWS[0], ROWS[1], _row(sessions_7d="3")]), 422, 2, "sessions_7d", "float_type"),
    ("number for text", json.dumps(_row(channel=1)), 422, 0, "channel", "string_type"),
    ("NaN", '[{"sessions_7d": NaN, "spend_28d": 1, "channel": "paid"}]', 422, 0, "sessions_7d", "finite_number"),
    ("Infinity", '{"sessions_7d": 1, "spend_28d": -Infinity, "channel": "paid"}', 422, 0, "spend_28d",
     "finite_number"),
    ("overflowing literal", '{"sessions_7d": 1e999, "spend_28d": 1, "channel": "paid"}', 422, 0, "sessions_7d",
     "finite_number"),
    ("huge integer", '{"sessions_7d": 1' + "0" * 400 + ', "spend_28d": 1, "channel": "paid"}', 422, 0,
     "sessions_7d", None),
    ("null where not nullable", json.dumps([ROWS[0], _row(spend_28d=None)]), 422, 1, "spend_28d", "float_type"),
    ("a row that is not an object", json.dumps([ROWS[0], [1, 2]]), 422, 1, None, "model_type"),
    ("a scalar body", "3", 422, None, None, "body_type"),
    ("empty list", "[]", 422, None, None, "too_short"),
    ("empty body", "", 400, None, None, "body_empty"),
    ("not JSON", "{'sessions_7d': 1}", 400, None, None, "json_invalid"),
    ("too many rows", json.dumps([ROWS[0]] * 6), 413, None, None, "too_long"),
    ("too many bytes", json.dumps([ROWS[0]] * 5) + " " * 5000, 413, None, None, "body_too_large"),
]


@pytest.mark.parametrize(("body", "status", "row", "field", "type_"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refused_inputs_are_4xx_naming_row_and_field(reg, model_files, make_client, body, status, row, field, type_):
    v1 = promote(reg, model_files[1][0], "run-1")
    publish(reg.root, v1)
    client = make_client(reg.root, max_rows=5, max_body_bytes=4096)
    response = client.post("/v1/score", content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    problems = response.json()["detail"]
    assert problems, response.text
    first = problems[0]
    assert set(first) == {"loc", "row", "field", "type", "msg"}
    assert first["row"] == row and first["field"] == field, problems
    if type_ is not None:
        assert first["type"] == type_, problems
    assert first["loc"] == ["body", *(x for x in (row, field) if x is not None)]


def test_every_bad_field_of_every_row_is_listed(served_v1):
    client, _ = served_v1
    body = [_row(sessions_7d="x"), ROWS[0], _row(channel=2, spend_28d=KeyError)]
    problems = client.post("/v1/score", json=body).json()["detail"]
    assert {(p["row"], p["field"]) for p in problems} == {(0, "sessions_7d"), (2, "channel"), (2, "spend_28d")}


def test_booleans_count_as_numbers(served_v1):
    client, _ = served_v1
    assert client.post("/v1/score", json=_row(sessions_7d=True)).status_code == 200


def test_a_value_the_model_overflows_on_is_a_422_naming_the_row(served_v1):
    client, _ = served_v1
    response = client.post("/v1/score", json=[ROWS[0], _row(sessions_7d=1.7e308), ROWS[2]])
    assert response.status_code in (200, 422), response.text  # a scaler may or may not overflow on it
    if response.status_code == 422:
        assert [p["row"] for p in response.json()["detail"]] == [1]


# ------------------------------------------------------------------------------------------------ endpoints


def test_model_health_and_openapi_describe_the_serving_scorer(served_v1):
    client, v1 = served_v1
    info = client.get("/v1/model").json()
    assert info["model_version"] == 1 and info["algorithm"] == "logreg" and info["runtime"] == "skops"
    assert info["model_sha256"] == v1.model_sha256 and info["schema"] == SCHEMA and info["pending_version"] is None
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["model_version"] == 1
    doc = client.get("/openapi.json").json()
    record = doc["components"]["schemas"]["ScoreRecord"]
    assert sorted(record["required"]) == sorted(f["name"] for f in SCHEMA["features"])
    assert record["additionalProperties"] is False
    assert doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScoreRequest"}


def test_no_champion_is_503_everywhere(tmp_path, make_client):
    client = make_client(tmp_path / "nothing-here")
    for method, path in (("get", "/healthz"), ("get", "/v1/model"), ("post", "/v1/score")):
        response = getattr(client, method)(path, **({"json": ROWS[0]} if method == "post" else {}))
        assert response.status_code == 503, (path, response.text)
        assert response.json()["model_version"] is None
    assert not (tmp_path / "nothing-here").exists(), "the service must never create a registry"
    empty = ModelRegistry(tmp_path / "empty")
    response = make_client(empty.root).get("/healthz")
    assert response.status_code == 503 and "no champion" in response.json()["detail"]


# ------------------------------------------------------------------------------------------------ hot swap


def test_promotion_and_rollback_swap_the_scorer(served_v1, reg, model_files):
    client, _ = served_v1
    before = client.post("/v1/score", json=ROWS).json()["scores"]
    v2 = promote(reg, model_files[2][0], "run-2")
    publish(reg.root, v2)
    wait_for(client, lambda body: body["model_version"] == 2)
    after = client.post("/v1/score", json=ROWS).json()
    assert after["model_version"] == 2 and after["scores"] != before
    reg.rollback(1, run_id="run-3", reason="test rollback")
    wait_for(client, lambda body: body["model_version"] == 1)
    again = client.post("/v1/score", json=ROWS).json()
    assert again["model_version"] == 1 and again["scores"] == before


def test_an_unpublished_champion_is_pending_and_the_previous_one_serves(served_v1, reg, model_files):
    client, _ = served_v1
    v2 = promote(reg, model_files[2][0], "run-2")
    body = wait_for(client, lambda body: body["pending_version"] == 2)
    assert body["model_version"] == 1 and "no published scorer" in body["pending_reason"]
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["pending_version"] == 2
    assert client.post("/v1/score", json=ROWS[0]).json()["model_version"] == 1
    publish(reg.root, v2)
    body = wait_for(client, lambda body: body["model_version"] == 2)
    assert body["pending_version"] is None


def test_a_published_folder_for_another_model_is_refused(served_v1, reg, model_files):
    client, _ = served_v1
    v2 = promote(reg, model_files[2][0], "run-2")
    publish(reg.root, v2, model_sha256="0" * 64)
    body = wait_for(client, lambda body: body["pending_version"] == 2)
    assert body["model_version"] == 1 and "model_sha256" in body["pending_reason"]


def test_a_request_in_flight_finishes_on_the_scorer_it_started_with(reg, model_files, make_client):
    release = threading.Event()
    v1 = promote(reg, model_files[1][0], "run-1")
    publish(reg.root, v1)
    client = make_client(reg.root)
    client.app.state.scorer.current.scorer.delay = release  # version 1 now blocks in predict until released
    result = {}
    in_flight = threading.Thread(target=lambda: result.update(client.post("/v1/score", json=ROWS).json()))
    in_flight.start()
    time.sleep(0.2)
    v2 = promote(reg, model_files[2][0], "run-2")
    publish(reg.root, v2)
    wait_for(client, lambda body: body["model_version"] == 2)
    assert client.post("/v1/score", json=ROWS[0]).json()["model_version"] == 2
    assert in_flight.is_alive(), "the request on version 1 should still be blocked"
    release.set()
    in_flight.join(10)
    assert result["model_version"] == 1 and len(result["scores"]) == len(ROWS)


def test_an_unreadable_registry_keeps_the_current_scorer(served_v1, reg, caplog):
    client, _ = served_v1
    service = client.app.state.scorer
    service.stop()
    reg.db_path.write_bytes(b"this is not a duckdb file" * 100)
    with caplog.at_level("WARNING", logger="refresh_assets.serving"):
        for _ in range(3):
            service.refresh()
    assert service.current.version == 1 and service.registry_error
    assert len([r for r in caplog.records if "cannot read the registry" in r.message]) == 1
    assert client.post("/v1/score", json=ROWS[0]).json()["model_version"] == 1
    assert client.get("/v1/model").json()["registry_error"]


def test_artifact_mode_serves_one_folder_without_a_registry(reg, model_files, tmp_path):
    v1 = promote(reg, model_files[1][0], "run-1")
    folder = publish(reg.root, v1)
    app = serving.create_app(artifact=folder, scorer_factory=stand_in_factory)
    client = TestClient(app)
    assert client.get("/healthz").json()["model_version"] == 1
    assert client.post("/v1/score", json=ROWS).json()["n_rows"] == len(ROWS)
