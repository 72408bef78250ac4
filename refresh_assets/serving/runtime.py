"""Online scorers with one interface: ``predict_proba1(frame_or_records) -> np.ndarray`` (float64, class 1).

* ``OnnxScorer``: onnxruntime on a model from ``convert.to_onnx``. Inputs are prepared here exactly as the
  graph expects them: numbers as float64 [N, 1] with NULL/pd.NA -> NaN; text as str [N, 1] with None / NaN /
  pd.NA -> the schema's ``missing_value`` (the pipelines' imputer fill value, ``"__missing__"``): ONNX string
  tensors cannot hold NULL, so this mapping is the part of the categorical imputers that runs outside ONNX.
* ``SkopsScorer``: the fallback, the skops model itself (``artifacts.load_model``, sha256-checked), fed the
  same normalised frame as batch training/scoring (``models._model_frame``).

Both are thread-safe: they hold no per-call state; ``InferenceSession.run`` may be called concurrently
(onnxruntime documents it thread-safe) and a fitted sklearn pipeline's ``predict_proba`` only reads it.
The ONNX session runs with ``intra_op_num_threads=1``: a single-row call has nothing to split across threads,
and a per-session thread pool would only add wake-up/sync latency and oversubscribe the cores when many
requests run concurrently (concurrency comes from request threads, not from inside one call).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMBER_DTYPE = np.float64  # must match convert.NUMBER_DTYPE (DoubleTensorType inputs)


def _as_frame(frame_or_records: Any) -> pd.DataFrame:
    if isinstance(frame_or_records, pd.DataFrame):
        return frame_or_records
    if isinstance(frame_or_records, Mapping):  # one JSON record
        return pd.DataFrame([dict(frame_or_records)])
    return pd.DataFrame(list(frame_or_records))


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and value != value  # NaN


def _prepare_records(records: Sequence[Mapping[str, Any]], schema: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Fast path for JSON records (no DataFrame: building one costs more than the model). Validated records (the
    scoring service's) take numpy's own conversion (None -> NaN, booleans -> 0/1, ints -> float) and, for text,
    one pass; anything else (pd.NA, NaN in a text column, numbers as strings) the per-value path."""
    feed: dict[str, np.ndarray] = {}
    for feature in schema["features"]:
        name = feature["name"]
        try:
            values = [record[name] for record in records]
        except KeyError:
            raise ValueError(f"input lacks feature column {name!r} the model needs") from None
        if feature["kind"] == "number":
            try:
                array = np.array(values, dtype=NUMBER_DTYPE)
            except (TypeError, ValueError):
                array = np.array([np.nan if _is_null(v) else float(v) for v in values], dtype=NUMBER_DTYPE)
            if array.ndim != 1:
                raise ValueError(f"feature {name!r} has a value that is not a single number")
        else:
            fill = feature["missing_value"]
            array = np.array([v if v.__class__ is str else (fill if _is_null(v) else str(v)) for v in values],
                             dtype=object)
        feed[name] = array.reshape(-1, 1)
    return feed


def prepare_inputs(frame_or_records: Any, schema: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The onnxruntime feed for ``convert.to_onnx``'s graph: one [N, 1] array per schema feature.

    Numbers: float64, NULL (None / NaN / pd.NA) -> NaN. Text: str, NULL -> the feature's ``missing_value``.
    Accepts a DataFrame, one record (a mapping) or a list of records.
    """
    if isinstance(frame_or_records, Mapping):
        return _prepare_records([frame_or_records], schema)
    if isinstance(frame_or_records, (list, tuple)) and all(isinstance(r, Mapping) for r in frame_or_records):
        return _prepare_records(frame_or_records, schema)
    frame = _as_frame(frame_or_records)
    missing = [f["name"] for f in schema["features"] if f["name"] not in frame.columns]
    if missing:
        raise ValueError(f"input lacks feature columns the model needs: {missing}")
    feed: dict[str, np.ndarray] = {}
    for feature in schema["features"]:
        name = feature["name"]
        series = frame[name]
        if feature["kind"] == "number":
            values = pd.to_numeric(series, errors="raise") if series.dtype == object else series
            array = values.to_numpy(dtype=NUMBER_DTYPE, na_value=np.nan)
        else:
            fill = feature.get("missing_value")
            if fill is None:
                raise ValueError(f"text feature {name!r} has no missing_value in the schema")
            array = np.array(
                [fill if _is_null(v) else str(v) for v in series.astype(object).tolist()], dtype=object
            )
        feed[name] = array.reshape(-1, 1)
    return feed


class OnnxScorer:
    """Scores with onnxruntime; ``path_or_bytes`` is a .onnx file path or the serialized model."""

    runtime = "onnx"

    def __init__(self, path_or_bytes: str | Path | bytes, schema: Mapping[str, Any]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # see the module docstring: single-row latency, no oversubscription
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        model = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
        self.session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.schema = dict(schema)
        self.output = self.schema.get("output", "proba1")
        expected = [f["name"] for f in self.schema["features"]]
        actual = [i.name for i in self.session.get_inputs()]
        if sorted(expected) != sorted(actual):
            raise ValueError(f"ONNX inputs {actual} do not match the schema features {expected}")

    def predict_proba1(self, frame_or_records: Any) -> np.ndarray:
        feed = prepare_inputs(frame_or_records, self.schema)
        (scores,) = self.session.run([self.output], feed)
        return np.asarray(scores, dtype=np.float64).reshape(-1)


class SkopsScorer:
    """Fallback: the skops model, loaded with the sha256 check of ``artifacts.load_model``."""

    runtime = "skops"

    def __init__(self, model_path: str | Path, sha256: str | None, schema: Mapping[str, Any] | None = None) -> None:
        from refresh_assets.core.artifacts import load_model

        self.model = load_model(model_path, sha256)
        self.schema = dict(schema) if schema is not None else None
        classes = list(np.asarray(self.model.classes_))
        if 1 not in classes:
            raise ValueError(f"model has no positive class 1 among its classes {classes}")
        self._positive = classes.index(1)

    @classmethod
    def from_model(cls, model: Any) -> SkopsScorer:
        """A scorer around an already-loaded pipeline (tests, or a model loaded elsewhere)."""
        scorer = cls.__new__(cls)
        scorer.model, scorer.schema = model, None
        scorer._positive = list(np.asarray(model.classes_)).index(1)
        return scorer

    def predict_proba1(self, frame_or_records: Any) -> np.ndarray:
        from refresh_assets.core.models import _model_frame, _pipeline_columns

        frame = _as_frame(frame_or_records)
        features = _model_frame(frame, _pipeline_columns(self.model, frame))
        return np.asarray(self.model.predict_proba(features)[:, self._positive], dtype=np.float64)


__all__: Sequence[str] = ("OnnxScorer", "SkopsScorer", "prepare_inputs")
