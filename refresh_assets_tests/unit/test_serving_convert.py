"""ONNX conversion of the champion pipelines: every default algorithm converts, scores like sklearn (max |diff|
<= 1e-4, same top-k), an unconvertible model falls back to skops with a reason."""

from __future__ import annotations

import statistics
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core import models
from refresh_assets.serving import convert, runtime

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sessions": rng.normal(size=n),
            "spend": rng.gamma(2.0, 10.0, n),
            "days_active": rng.integers(0, 50, n).astype("float64"),
            "friends": pd.array(rng.integers(0, 5, n), dtype="Int64"),  # nullable Int
            "platform": rng.choice(["ios", "android", "web", None], n).astype(object),
            "region": rng.choice(["eu", "us", None], n).astype(object),
        }
    )
    frame.loc[rng.random(n) < 0.1, "sessions"] = np.nan
    frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    frame.loc[rng.random(n) < 0.1, "friends"] = pd.NA
    signal = frame["days_active"] / 50 + (frame["platform"] == "ios") + frame["sessions"].fillna(0) / 3
    y = (signal + rng.random(n) > 1.2).astype("int64").to_numpy()
    return frame, y


@pytest.fixture(scope="module")
def data() -> dict:
    train, y = _frame(1000, 0)
    score, _ = _frame(600, 1)
    score.loc[::9, "platform"] = "switch"  # a category the encoder never saw
    score.loc[::11, "region"] = None
    score.loc[::13, "platform"] = np.nan  # NaN as NULL in a text column too
    dates = np.repeat(pd.date_range("2026-01-04", periods=5, freq="7D").to_numpy(), 200)
    return {"train": train, "y": y, "score": score, "dates": dates}


@pytest.fixture(scope="module")
def fitted(data) -> dict:
    numeric, categorical = models.feature_columns(data["train"])
    assert categorical == ["platform", "region"] and "friends" in numeric
    pipelines = {
        name: models.fit_pipeline(models.build_pipeline(name, numeric, categorical, seed=0), data["train"], data["y"])
        for name in models.BASE_ALGORITHMS
    }
    # the real ensemble path: tune_ensemble over the base pipelines (weights tuned, small budget)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = models.tune_ensemble(
            pipelines, data["train"], data["y"], data["dates"], n_iter=3, n_splits=2, seed=0, importance_rows=0
        )
    pipelines["ensemble"] = tuned.pipeline
    return pipelines


@pytest.mark.parametrize("algorithm", models.ALGORITHMS)
def test_every_algorithm_converts_with_parity(fitted, data, algorithm):
    pipeline = fitted[algorithm]
    runtime_name, onnx_bytes, result, reason = convert.convert_or_fallback(pipeline, data["score"])
    assert runtime_name == "onnx", reason
    assert reason is None and onnx_bytes
    assert result["rows"] == len(data["score"])
    assert result["max_abs_diff"] <= TOLERANCE
    assert result["same_top_k"] and result["top_k_rows"] == 60

    # JSON records (None for NULL, the unseen category) map straight onto the inputs
    schema = convert.input_schema(data["score"], pipeline)
    scorer = runtime.OnnxScorer(onnx_bytes, schema)
    rows = data["score"].iloc[:20].astype(object).where(data["score"].iloc[:20].notna(), None)
    records = rows.to_dict(orient="records")
    expected = convert._reference_scores(pipeline, data["score"].iloc[:20])
    np.testing.assert_allclose(scorer.predict_proba1(records), expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(scorer.predict_proba1(records[3]), expected[3:4], atol=TOLERANCE, rtol=0)


def test_input_schema(fitted, data):
    schema = convert.input_schema(data["score"], fitted["ensemble"])
    features = {f["name"]: f for f in schema["features"]}
    assert [f["name"] for f in schema["features"]] == list(fitted["ensemble"].feature_names_in_)
    assert features["platform"]["kind"] == "text"
    assert features["platform"]["categories"] == sorted(["android", "ios", "web", models.MISSING_CATEGORY])
    assert features["platform"]["missing_value"] == models.MISSING_CATEGORY
    assert features["friends"] == {"name": "friends", "kind": "number", "categories": [], "nullable": True}
    assert all(f["nullable"] for f in schema["features"])
    assert schema["output"] == convert.OUTPUT_NAME


def test_frozen_members_convert(fitted, data):
    """The FrozenEstimator-wrapped ensemble models.py builds per fold converts like the plain one."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    members = [(name, FrozenEstimator(fitted[name])) for name in models.BASE_ALGORITHMS]
    ensemble = Pipeline([("model", VotingClassifier(members, voting="soft", weights=[2, 0, 1]))])
    ensemble.fit(models._model_frame(data["train"]), data["y"])
    runtime_name, _, result, reason = convert.convert_or_fallback(ensemble, data["score"])
    assert runtime_name == "onnx", reason
    assert result["max_abs_diff"] <= TOLERANCE and result["same_top_k"]


def _custom_classifier_pipeline(data):
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.pipeline import Pipeline

    class MeanClassifier(ClassifierMixin, BaseEstimator):  # no skl2onnx converter exists for this
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            self.mean_ = np.asarray(X, dtype=float).mean(axis=0)
            return self

        def predict_proba(self, X):
            p = 1 / (1 + np.exp(-(np.asarray(X, dtype=float) - self.mean_).sum(axis=1) / 10))
            return np.column_stack([1 - p, p])

    numeric, categorical = models.feature_columns(data["train"])
    preprocess = models._preprocessor("logreg", numeric, categorical)
    pipeline = Pipeline([("preprocess", preprocess), ("model", MeanClassifier())])
    return pipeline.fit(models._model_frame(data["train"]), data["y"])


def test_unconvertible_estimator_falls_back_with_reason(data):
    pipeline = _custom_classifier_pipeline(data)
    runtime_name, onnx_bytes, result, reason = convert.convert_or_fallback(pipeline, data["score"])
    assert runtime_name == "skops" and onnx_bytes is None
    assert result["ok"] is False
    assert reason and reason.startswith("ONNX conversion failed") and "MeanClassifier" in reason


def test_parity_failure_falls_back_with_reason(fitted, data):
    # a zero tolerance cannot be met by float arithmetic in another engine: must fall back, not pass silently
    runtime_name, onnx_bytes, result, reason = convert.convert_or_fallback(
        fitted["hist_gb"], data["score"], tolerance=0.0
    )
    if result.get("max_abs_diff") == 0.0:  # pragma: no cover - bit-identical engines would be fine too
        pytest.skip("onnxruntime matched sklearn bit for bit")
    assert runtime_name == "skops" and onnx_bytes is None and "parity failed" in reason
    assert result["max_abs_diff"] > 0


def test_skops_scorer_fallback(fitted, data, tmp_path):
    from refresh_assets.core.artifacts import ModelIntegrityError, save_model

    path = tmp_path / "model.skops"
    sha = save_model(fitted["logreg"], path)
    scorer = runtime.SkopsScorer(path, sha)
    result = convert.parity(fitted["logreg"], scorer, data["score"])
    assert result["max_abs_diff"] == 0.0 and result["same_top_k"]
    with pytest.raises(ModelIntegrityError):
        runtime.SkopsScorer(path, "0" * 64)


def test_onnx_scorer_is_thread_safe(fitted, data):
    pipeline = fitted["random_forest"]
    schema = convert.input_schema(data["score"], pipeline)
    scorer = runtime.OnnxScorer(convert.to_onnx(pipeline, schema), schema)
    expected = scorer.predict_proba1(data["score"])
    failures: list[str] = []

    def work(start: int) -> None:
        for i in range(start, len(data["score"]), 8):
            got = scorer.predict_proba1(data["score"].iloc[i : i + 1])
            if got[0] != expected[i]:
                failures.append(f"row {i}: {got[0]} != {expected[i]}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def _median_seconds(call, repeats: int = 200) -> float:
    call()  # warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


@pytest.mark.parametrize("algorithm", models.ALGORITHMS)
def test_single_row_latency_report(fitted, data, algorithm):
    """Printed, not asserted (run with -s): the figures for the serving note."""
    pipeline = fitted[algorithm]
    schema = convert.input_schema(data["score"], pipeline)
    scorer = runtime.OnnxScorer(convert.to_onnx(pipeline, schema), schema)
    record = data["score"].iloc[[5]].astype(object).where(data["score"].iloc[[5]].notna(), None)
    record = record.to_dict(orient="records")[0]
    feed = runtime.prepare_inputs(record, schema)
    onnx_session_only = _median_seconds(lambda: scorer.session.run(None, feed))
    onnx_scorer = _median_seconds(lambda: scorer.predict_proba1(record))
    row = models._model_frame(data["score"].iloc[[5]], list(pipeline.feature_names_in_))
    sklearn = _median_seconds(lambda: pipeline.predict_proba(row))
    print(
        f"\n[latency] {algorithm}: onnxruntime session.run (prepared feed) {onnx_session_only * 1e3:.3f} ms,"
        f" OnnxScorer(record) {onnx_scorer * 1e3:.3f} ms, sklearn predict_proba(1 row) {sklearn * 1e3:.3f} ms"
        f" (median of 200)"
    )


def _onnx_folder(tmp_path, pipeline, frame) -> tuple:
    """A scorer folder as serving/build.py writes it: model.onnx, scorer.json with the file's sha256."""
    import hashlib
    import json

    runtime_name, onnx_bytes, parity, reason = convert.convert_or_fallback(pipeline, frame)
    assert runtime_name == "onnx", reason
    folder = tmp_path / "scorer"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(onnx_bytes)
    meta = {"version": 3, "algorithm": "hist_gb", "model_sha256": "a" * 64, "runtime": "onnx",
            "model_file": "model.onnx", "model_file_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "risk_threshold": 0.5, "schema": convert.input_schema(frame, pipeline), "parity": parity}
    (folder / "scorer.json").write_text(json.dumps(meta))
    return folder, meta


def test_the_served_onnx_scores_equal_sklearn_and_a_tampered_file_is_refused(fitted, data, tmp_path):
    """The service's own path (body -> validate_json -> arrays -> ONNX) gives sklearn's scores for rows with NULLs,
    an unseen category, integers and booleans as numbers; a model file changed after it was built is refused."""
    import json

    from fastapi.testclient import TestClient

    from refresh_assets.serving import app as serving

    pipeline, frame = fitted["hist_gb"], data["score"]
    folder, meta = _onnx_folder(tmp_path, pipeline, frame)
    head = frame.iloc[:200]
    records = head.astype(object).where(head.notna(), None).to_dict(orient="records")
    for record in records:  # integers and booleans are numbers too (1 / True both mean 1.0 to the model)
        if record["days_active"] is not None:
            record["days_active"] = int(record["days_active"])
    records[0]["friends"] = True
    expected_frame = head.copy()
    expected_frame["friends"] = expected_frame["friends"].astype("Float64")
    expected_frame.loc[expected_frame.index[0], "friends"] = 1.0
    expected = convert._reference_scores(pipeline, expected_frame)
    app = serving.create_app(artifact=folder, start_polling=False)
    with TestClient(app) as client:
        answer = client.post("/v1/score", content=json.dumps(records))
        assert answer.status_code == 200, answer.text
        served = [item["score"] for item in answer.json()["scores"]]
        assert answer.json()["model_version"] == 3
    np.testing.assert_allclose(served, expected, atol=TOLERANCE, rtol=0)

    model = folder / "model.onnx"
    data_bytes = bytearray(model.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0xFF
    model.write_bytes(bytes(data_bytes))
    with pytest.raises(ValueError, match="model.onnx has sha256 .* changed after it was tested"):
        serving.load_scorer_folder(folder)
    tampered = serving.create_app(artifact=folder, start_polling=False)
    with TestClient(tampered) as client:
        answer = client.post("/v1/score", json=records[0])
        assert answer.status_code == 503 and "changed after it was tested" in answer.json()["detail"], answer.text

    (folder / "scorer.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "model_file_sha256"}))
    with pytest.raises(ValueError, match="records no model_file_sha256"):
        serving.load_scorer_folder(folder)
