"""The real-time scorer: an HTTP service that scores players with the champion's published scorer.

``create_app(registry_root)`` serves the scorer published for the champion in force
(``<registry>/scorers/v<N>/``: ``scorer.json`` + ``model.onnx`` or ``model.skops``, written by
``serving/build.py``) and swaps to the next one while it keeps serving:

* a background thread reads the champion every ``poll_seconds``; when it changes and the new version's folder
  exists, the new scorer is loaded and warmed up completely, then ONE reference is replaced. A request reads that
  reference once, so it is validated and scored by one scorer and its response names that scorer's version;
* a champion without a published folder (its conformance test failed or has not run yet) leaves the previous
  scorer serving, and ``/v1/model`` and ``/healthz`` report ``pending_version``; a registry that cannot be read
  (locked by a writer, damaged) also leaves the scorer as it is (logged once per distinct error);
* a request is checked against the scorer's input schema before it is scored, with a pydantic TypedDict generated
  from ``scorer.json``'s schema; every rejected input is a 4xx whose body names the row and the field, never a
  500 (the request body schema in ``/openapi.json`` is the same model, so the API can be fuzzed from it).

Endpoints: ``POST /v1/score``, ``GET /v1/model``, ``GET /healthz``, ``GET /openapi.json``.

``python -m refresh_assets.serving.app --artifact <folder>`` serves one built scorer folder without a registry (the
generated conformance test does this); ``refresh-assets scorer`` serves the registry's champion.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
import pydantic_core
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictBool, TypeAdapter, ValidationError
from starlette.responses import Response
from typing_extensions import TypedDict
from starlette.concurrency import run_in_threadpool

__all__ = ["DEFAULT_MAX_BODY_BYTES", "LoadedScorer", "ScorerService", "create_app", "load_scorer_folder", "main",
           "serve"]

log = logging.getLogger("refresh_assets.serving")

SCORER_FILE = "scorer.json"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
#: a request body larger than this is refused with 413 before it is parsed
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: at most this many field errors are listed in one 422
MAX_LISTED_ERRORS = 50
#: loaded scorers kept in memory, so a rollback to a recent version swaps at once
CACHED_SCORERS = 4
#: how long one registry read may wait for a writer's lock before the poll gives up (and tries again)
REGISTRY_LOCK_TIMEOUT_SECONDS = 2.0


# ----------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A request the service refuses: ``status`` and the JSON ``detail`` (a list of {loc, row, field, type, msg})."""

    def __init__(self, status: int, detail: list[dict[str, Any]] | str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def _problem(type_: str, msg: str, row: int | None = None, field: str | None = None) -> dict[str, Any]:
    loc: list[Any] = ["body"]
    if row is not None:
        loc.append(row)
    if field is not None:
        loc.append(field)
    return {"loc": loc, "row": row, "field": field, "type": type_, "msg": msg}


# ----------------------------------------------------------------------------------------- schema -> pydantic


# A number: a finite float, an integer, or a boolean (a 0/1 number for the model: pandas bool columns are numeric
# features). The boolean is its own union member rather than a Python BeforeValidator, so validation stays in
# pydantic-core (a Python call per value was a third of a 1,000-row request).
_Number = Annotated[float, Strict(), AllowInfNan(False)] | StrictBool
_Text = Annotated[str, Strict()]


def check_schema(schema: Any) -> list[dict[str, Any]]:
    """The feature list of a scorer.json schema, checked (non-empty, unique names, known kinds)."""
    features = schema.get("features") if isinstance(schema, dict) else None
    if not isinstance(features, list) or not features:
        raise ValueError("scorer.json schema has no 'features' list")
    names = [feature.get("name") if isinstance(feature, dict) else None for feature in features]
    if not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise ValueError(f"scorer.json schema has missing or duplicate feature names: {names}")
    kinds = {feature["name"]: feature.get("kind") for feature in features}
    unknown = {name: kind for name, kind in kinds.items() if kind not in ("number", "text")}
    if unknown:
        raise ValueError(f"scorer.json schema has features of unknown kind (not 'number'/'text'): {unknown}")
    return features


def record_type(schema: dict[str, Any], name: str = "ScoreRecord") -> type:
    """One input row as a TypedDict pydantic validates: every feature required (null allowed when nullable), no
    other key, numbers finite, no text where a number is expected and no number where text is. A TypedDict (not a
    BaseModel) so that ``validate_json`` parses and checks a body in one pass in pydantic-core and hands back the
    rows as plain dicts keyed by the feature names, whatever they are (spaces, leading underscores)."""
    fields: dict[str, Any] = {}
    for feature in check_schema(schema):
        kind = feature["kind"]
        annotation: Any = _Number if kind == "number" else _Text
        if feature.get("nullable", True):
            annotation = annotation | None
        categories = feature.get("categories") or []
        description = (f"{kind}{', may be null' if feature.get('nullable', True) else ''}"
                       + (f"; known categories: {', '.join(map(str, categories[:20]))} (others score as unseen)"
                          if kind == "text" and categories else ""))
        extra = {"examples": [str(c) for c in categories[:20]]} if kind == "text" and categories else None
        fields[feature["name"]] = Annotated[annotation, Field(description=description, json_schema_extra=extra)]
    record = TypedDict(name, fields, total=True)  # type: ignore[misc,operator]
    record.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[attr-defined]
    return record


# ----------------------------------------------------------------------------------------- loading a scorer


@dataclass(frozen=True)
class LoadedScorer:
    """A published scorer, loaded and warmed up: what one request reads once and uses throughout."""

    version: int
    algorithm: str
    model_sha256: str
    runtime: str
    risk_threshold: float
    schema: dict[str, Any]
    features: tuple[dict[str, Any], ...]  # the schema's features, in order
    scorer: Any  # .predict_proba1(frame_or_records) -> np.ndarray of P(churn), thread-safe
    rows_adapter: TypeAdapter  # list[record_type(schema)]: a list of records
    record_adapter: TypeAdapter  # record_type(schema): one record
    record_json_schema: dict[str, Any]
    folder: str
    loaded_at: float

    def describe(self) -> dict[str, Any]:
        return {"model_version": self.version, "algorithm": self.algorithm, "model_sha256": self.model_sha256,
                "runtime": self.runtime, "risk_threshold": self.risk_threshold, "schema": self.schema}


def read_verified(path: Path, expected_sha256: str | None) -> bytes:
    """The file's bytes, refused unless their sha256 is the one ``scorer.json`` recorded when the scorer was built
    and tested (a model file changed since, by hand or on a damaged disk, is never served)."""
    if not expected_sha256:
        raise ValueError(f"{path.parent / SCORER_FILE} records no model_file_sha256 for {path.name}: the scorer "
                         "cannot be verified; build it again (materialize realtime_scorer)")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != str(expected_sha256).lower():
        raise ValueError(f"{path} has sha256 {actual[:12]}..., but {SCORER_FILE} records {str(expected_sha256)[:12]}...: "
                         "the model file was changed after it was tested; refusing to serve it")
    return data


def default_scorer_factory(folder: Path, meta: dict[str, Any]) -> Any:
    """The runtime's scorer for a published folder (serving/runtime.py): OnnxScorer or SkopsScorer."""
    from refresh_assets.serving import runtime

    if meta["runtime"] == "onnx":
        return runtime.OnnxScorer(read_verified(folder / ONNX_FILE, meta.get("model_file_sha256")), meta["schema"])
    if meta["runtime"] == "skops":
        return runtime.SkopsScorer(folder / SKOPS_FILE, meta["model_sha256"], meta["schema"])
    raise ValueError(f"scorer.json runtime {meta['runtime']!r} is neither 'onnx' nor 'skops'")


def model_frame(records: list[dict[str, Any]], features: list[dict[str, Any]]):
    """The rows as the runtimes want them: schema order, numbers float64 (null -> NaN, booleans 0/1), text as
    objects (null -> None)."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for feature in features:
        name = feature["name"]
        if feature["kind"] == "number":
            columns[name] = np.array([np.nan if r[name] is None else float(r[name]) for r in records],
                                     dtype="float64")
        else:
            columns[name] = pd.Series([r[name] for r in records], dtype=object)
    return pd.DataFrame(columns)


def scorer_input(scorer: Any, records: list[dict[str, Any]], features: list[dict[str, Any]]) -> Any:
    """What ``scorer.predict_proba1`` is given: the validated records themselves for the ONNX runtime (it builds
    its arrays from them directly, runtime.prepare_inputs; a DataFrame in between cost ~40% of a 1,000-row
    request), a DataFrame (``model_frame``) for any other scorer."""
    if getattr(scorer, "runtime", None) == "onnx":
        return records
    return model_frame(records, features)


def _warm_up_row(features: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for feature in features:
        if feature.get("nullable", True):
            row[feature["name"]] = None
        elif feature["kind"] == "number":
            row[feature["name"]] = 0.0
        else:
            categories = feature.get("categories") or [""]
            row[feature["name"]] = str(categories[0])
    return row


def load_scorer_folder(folder: str | Path, scorer_factory: Callable[[Path, dict], Any] = default_scorer_factory,
                       expect_version: int | None = None, expect_sha256: str | None = None) -> LoadedScorer:
    """Read ``scorer.json``, check it (the expected version and model sha256, deployable, schema), load the
    model with ``scorer_factory`` and score one row, so that a scorer that cannot score is never swapped in."""
    folder = Path(folder)
    meta = json.loads((folder / SCORER_FILE).read_text())
    version = int(meta["version"])
    if expect_version is not None and version != expect_version:
        raise ValueError(f"{folder / SCORER_FILE} is for version {version}, expected {expect_version}")
    if meta.get("deployable", True) is not True:
        raise ValueError(f"{folder / SCORER_FILE} is marked deployable: {meta.get('deployable')!r}")
    if expect_sha256 is not None and str(meta.get("model_sha256", "")).lower() != expect_sha256.lower():
        raise ValueError(f"{folder / SCORER_FILE} has model_sha256 {meta.get('model_sha256')}, but the registry's "
                         f"version {version} has {expect_sha256}")
    threshold = float(meta["risk_threshold"])
    if not math.isfinite(threshold):
        raise ValueError(f"{folder / SCORER_FILE} has a non-finite risk_threshold")
    features = check_schema(meta.get("schema"))
    record = record_type(meta["schema"])
    scorer = scorer_factory(folder, meta)
    probe = scorer.predict_proba1(scorer_input(scorer, [_warm_up_row(features)], features))
    if len(probe) != 1 or not math.isfinite(float(probe[0])):
        raise ValueError(f"the scorer of {folder} did not return one finite probability for a warm-up row: {probe!r}")
    return LoadedScorer(
        version=version, algorithm=str(meta.get("algorithm", "")), model_sha256=str(meta.get("model_sha256", "")),
        runtime=str(meta["runtime"]), risk_threshold=threshold, schema=meta["schema"],
        features=tuple(features), scorer=scorer,
        rows_adapter=TypeAdapter(list[record]), record_adapter=(record_adapter := TypeAdapter(record)),
        record_json_schema=record_adapter.json_schema(ref_template="#/components/schemas/{model}"),
        folder=str(folder), loaded_at=time.time())


# ----------------------------------------------------------------------------------------- the hot swap


class ScorerService:
    """Which scorer serves: the champion's published scorer, swapped by a polling thread.

    ``current`` is one reference, replaced (never mutated) when a new scorer is ready. ``artifact`` mode serves
    one folder and never polls.
    """

    def __init__(self, registry_root: str | Path | None, poll_seconds: float = 0.5,
                 scorer_factory: Callable[[Path, dict], Any] = default_scorer_factory,
                 artifact: str | Path | None = None) -> None:
        if (registry_root is None) == (artifact is None):
            raise ValueError("give a registry root or an artifact folder (exactly one)")
        self.root = None if registry_root is None else Path(registry_root).resolve()
        self.artifact = None if artifact is None else Path(artifact).resolve()
        self.poll_seconds = float(poll_seconds)
        self.scorer_factory = scorer_factory
        self.current: LoadedScorer | None = None
        self.champion_version: int | None = None
        self.pending_version: int | None = None
        self.pending_reason: str | None = None
        self.registry_error: str | None = None
        self.swaps = 0
        self._cache: OrderedDict[int, LoadedScorer] = OrderedDict()
        self._failed: dict[tuple[int, str], str] = {}
        self._logged: set[str] = set()
        self._registry = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    # -- one poll

    def _log_once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.log(level, message, *args)

    def _champion(self):
        assert self.root is not None
        if self._registry is None:
            if not (self.root / "registry.duckdb").exists() and not any((self.root / "journal").glob("*.json")):
                return None  # never create a registry from the service: nothing promoted yet
            # (a missing file with a journal is a lost history: ModelRegistry says so, and we keep serving)
            from refresh_assets.core.registry import ModelRegistry

            self._registry = ModelRegistry(self.root, lock_timeout_seconds=REGISTRY_LOCK_TIMEOUT_SECONDS)
        return self._registry.current_champion()

    def refresh(self) -> LoadedScorer | None:
        """One poll: read the champion, swap to its published scorer if needed. Never raises."""
        with self._refresh_lock:
            if self.artifact is not None:
                if self.current is None:
                    try:
                        self._swap(load_scorer_folder(self.artifact, self.scorer_factory))
                    except Exception as error:  # noqa: BLE001 - reported by /healthz, logged
                        self.pending_reason = f"cannot load {self.artifact}: {error}"
                        self._log_once(self.pending_reason, logging.ERROR, "%s", self.pending_reason)
                return self.current
            try:
                champion = self._champion()
            except Exception as error:  # noqa: BLE001 - locked or damaged registry: keep serving what we have
                self.registry_error = f"{type(error).__name__}: {error}"
                self._log_once(f"registry:{self.registry_error}", logging.WARNING,
                               "cannot read the registry (keeping model version %s): %s",
                               getattr(self.current, "version", None), self.registry_error)
                return self.current
            if self.registry_error is not None:
                log.info("the registry is readable again")
                self._logged = {key for key in self._logged if not key.startswith("registry:")}
            self.registry_error = None
            if champion is None:
                self.champion_version = None
                self.pending_version, self.pending_reason = None, None
                return self.current
            version = int(champion.version)
            self.champion_version = version
            current = self.current
            if current is not None and current.version == version:
                self.pending_version, self.pending_reason = None, None
                return current
            cached = self._cache.get(version)
            if cached is not None and cached.model_sha256.lower() == champion.model_sha256.lower():
                self._swap(cached)
                return cached
            folder = self.root / "scorers" / f"v{version}"
            key = (version, champion.model_sha256)
            if key in self._failed:
                self.pending_version, self.pending_reason = version, self._failed[key]
                return current
            if not (folder / SCORER_FILE).is_file():
                self.pending_version = version
                self.pending_reason = f"no published scorer for version {version} in {folder}"
                self._log_once(f"unpublished:{version}", logging.WARNING,
                               "champion is version %d but %s does not exist yet: still serving version %s",
                               version, folder, getattr(current, "version", None))
                return current
            try:
                loaded = load_scorer_folder(folder, self.scorer_factory, expect_version=version,
                                            expect_sha256=champion.model_sha256)
            except Exception as error:  # noqa: BLE001 - a broken published folder never replaces a working scorer
                reason = f"cannot load the published scorer of version {version}: {type(error).__name__}: {error}"
                self._failed[key] = reason
                self.pending_version, self.pending_reason = version, reason
                log.error("%s; still serving version %s", reason, getattr(current, "version", None))
                return current
            self._swap(loaded)
            return loaded

    def _swap(self, loaded: LoadedScorer) -> None:
        previous = self.current
        self._cache[loaded.version] = loaded
        self._cache.move_to_end(loaded.version)
        while len(self._cache) > CACHED_SCORERS:
            self._cache.popitem(last=False)
        self.current = loaded  # the swap: one reference assignment, atomic for readers
        self.pending_version, self.pending_reason = None, None
        self.swaps += 1
        log.warning("now serving model version %d (%s, %s runtime)%s", loaded.version, loaded.algorithm,
                    loaded.runtime, "" if previous is None else f", was version {previous.version}")

    # -- the thread

    def start(self) -> None:
        if self.artifact is not None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scorer-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def status(self) -> dict[str, Any]:
        current = self.current
        return {"model_version": None if current is None else current.version,
                "champion_version": self.champion_version, "pending_version": self.pending_version,
                "pending_reason": self.pending_reason, "registry_error": self.registry_error}


# ----------------------------------------------------------------------------------------- the HTTP app


class Score(BaseModel):
    score: float = Field(description="probability of churn, 0..1")
    risk: bool = Field(description="score >= the scorer's risk_threshold")


class ScoreResponse(BaseModel):
    model_version: int
    algorithm: str
    risk_threshold: float
    n_rows: int
    scores: list[Score] = Field(description="one per input row, in input order (a single record gives a list of one)")


class ErrorItem(BaseModel):
    loc: list[str | int]
    row: int | None = Field(description="index of the offending row (0 for a single record), null for the body")
    field: str | None = Field(description="the feature name, null when the row or body as a whole is wrong")
    type: str
    msg: str


class ErrorResponse(BaseModel):
    detail: list[ErrorItem]


class Unavailable(BaseModel):
    status: str
    detail: str
    model_version: int | None
    champion_version: int | None
    pending_version: int | None
    pending_reason: str | None
    registry_error: str | None


class Health(BaseModel):
    status: str
    model_version: int
    champion_version: int | None
    pending_version: int | None
    pending_reason: str | None
    registry_error: str | None


class ModelInfo(Health):
    algorithm: str
    model_sha256: str
    runtime: str
    risk_threshold: float
    schema_: dict[str, Any] = Field(alias="schema")
    loaded_at: float


_ERRORS = {400: {"model": ErrorResponse, "description": "body is not JSON"},
           413: {"model": ErrorResponse, "description": "too many rows or too many bytes"},
           422: {"model": ErrorResponse, "description": "a row does not match the schema (row and field named)"},
           503: {"model": Unavailable, "description": "no scorer loaded yet"}}


def _validation_problems(error: ValidationError, single: bool) -> list[dict[str, Any]]:
    """pydantic's errors as the API's: the row (0 for a single record) and the field named. A number's union
    (float | bool) reports both members; the float member's message is kept."""
    problems, seen = [], set()
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(item.get("loc", ()))
        if not single:
            row = loc[0] if loc and isinstance(loc[0], int) else None
            rest = loc[1:] if row is not None else loc
        else:
            row, rest = 0, loc
        field = str(rest[0]) if rest else None
        if len(rest) > 1 and rest[-1] == "bool" and (row, field) in seen:
            continue  # the boolean member of a number's union: the float member's message says it
        seen.add((row, field))
        msg, type_ = item.get("msg", "invalid"), item.get("type", "value_error")
        if type_ in ("dict_type", "model_type"):
            msg, type_ = "a record must be a JSON object of feature name -> value", "model_type"
        elif len(rest) > 1 and rest[-1] in ("float", "bool") and type_ == "float_type":
            msg = "Input should be a valid number (a finite number, an integer or a boolean)"
        problems.append(_problem(type_, msg, row, field))
        if len(problems) >= MAX_LISTED_ERRORS:
            break
    return problems


def _parse_rows(body: bytes, loaded: LoadedScorer, max_rows: int) -> tuple[list[dict[str, Any]], bool]:
    """Parse and validate a body in one pass of pydantic-core (``validate_json``; 1.6x faster than parsing, then
    validating, a 1,000-row body): one record (an object) or a list of records."""
    stripped = body.lstrip()
    if not stripped:
        raise ApiError(400, [_problem("body_empty", "the body is empty: send one record or a list of records")])
    single = stripped[:1] == b"{"
    if not single and stripped[:1] != b"[":
        payload = _not_json(body)  # a JSON scalar, or not JSON at all
        raise ApiError(422, [_problem("body_type", "the body must be one record (a JSON object) or a list of "
                                                   f"records, got {type(payload).__name__}")])
    try:
        rows = [loaded.record_adapter.validate_json(body)] if single else loaded.rows_adapter.validate_json(body)
    except ValidationError as error:
        invalid = [item for item in error.errors(include_url=False) if item.get("type") == "json_invalid"]
        if invalid:
            raise ApiError(400, [_problem("json_invalid", f"the body is not valid JSON: {invalid[0]['msg'][:200]}")]
                           ) from None
        if not single:  # too many rows is the first thing to say, whatever else is wrong
            _check_row_count(_json_length(body), max_rows)
        raise ApiError(422, _validation_problems(error, single)) from None
    if not rows:
        raise ApiError(422, [_problem("too_short", "the list of records is empty")])
    _check_row_count(len(rows), max_rows)
    return rows, single


def _not_json(body: bytes) -> Any:
    """The body parsed, or the 400 that says where it is not JSON."""
    try:
        return pydantic_core.from_json(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, [_problem("json_invalid", f"the body is not valid JSON: {str(error)[:200]}")]) from None


def _json_length(body: bytes) -> int:
    try:
        payload = pydantic_core.from_json(body)
    except (ValueError, RecursionError):
        return 0
    return len(payload) if isinstance(payload, list) else 1


def _check_row_count(count: int, max_rows: int) -> None:
    if count > max_rows:
        raise ApiError(413, [_problem("too_long", f"{count} records in one request; at most {max_rows}")])


def _finite_scores(loaded: LoadedScorer, records: list[dict[str, Any]]) -> list[float]:
    """Score the rows; a row the model cannot score (a huge value overflowing the scaling, say) is a 422 naming
    it, found by scoring the rows one by one only when the batch fails."""
    features = list(loaded.features)
    try:
        scores = loaded.scorer.predict_proba1(scorer_input(loaded.scorer, records, features)).tolist()
        if len(scores) != len(records):
            raise RuntimeError(f"the scorer returned {len(scores)} scores for {len(records)} rows")
        if all(math.isfinite(s) for s in scores):
            return scores
    except (ValueError, ArithmeticError):
        pass
    problems = []
    for index in range(len(records)):
        try:
            value = float(loaded.scorer.predict_proba1(scorer_input(loaded.scorer, records[index:index + 1],
                                                                    features))[0])
            ok = math.isfinite(value)
        except (ValueError, ArithmeticError):
            ok = False
        if not ok:
            problems.append(_problem("unscorable", "the model cannot score this row: a value is outside the range "
                                                   "it can compute with (overflow)", row=index))
            if len(problems) >= MAX_LISTED_ERRORS:
                break
    if not problems:  # the batch failed but every row alone scores: a real server error
        raise RuntimeError("the scorer failed on the batch but on none of its rows")
    raise ApiError(422, problems)


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise ApiError(413, [_problem("body_too_large", f"the body has {declared} bytes; at most {max_body_bytes}")])
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise ApiError(413, [_problem("body_too_large", f"the body has more than {max_body_bytes} bytes")])
        chunks.append(chunk)
    return b"".join(chunks)


def _unavailable(service: ScorerService) -> JSONResponse:
    status = service.status()
    reason = status["pending_reason"] or status["registry_error"] or (
        "no champion in the registry yet" if service.artifact is None else "the scorer could not be loaded")
    return JSONResponse({"status": "unavailable", "detail": reason, **status}, status_code=503)


def create_app(registry_root: str | Path | None = None, poll_seconds: float = 0.5, max_rows: int = 10_000, *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               scorer_factory: Callable[[Path, dict], Any] = default_scorer_factory,
               artifact: str | Path | None = None, start_polling: bool = True) -> FastAPI:
    """The scoring app. Loads the champion's published scorer now (so it serves at once) and starts the thread
    that polls for a new champion every ``poll_seconds`` (stopped by the app's shutdown, or
    ``app.state.scorer.stop()``). ``artifact``: serve that one scorer folder instead of a registry's champion."""
    service = ScorerService(registry_root, poll_seconds, scorer_factory, artifact)
    service.refresh()
    if start_polling:
        service.start()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.start() if start_polling else None
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="refresh-assets real-time scorer", version="1",
                  description="Churn probability of players, scored by the champion's published scorer.",
                  lifespan=lifespan)
    app.state.scorer = service

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status)

    @app.post("/v1/score", response_model=ScoreResponse, responses=_ERRORS,
              summary="Score one record (a JSON object) or a list of records",
              description="Body: one record `{feature: value}` or a non-empty list of them. The answer always "
                          "holds a list `scores`, one `{score, risk}` per record in input order (one element for "
                          "a single record), and `model_version`, the version that scored every row of it.",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "$ref": "#/components/schemas/ScoreRequest"}}}}})
    async def score(request: Request):
        loaded = service.current  # read once: this request is validated and scored by this scorer only
        if loaded is None:
            return _unavailable(service)
        body = await _read_body(request, max_body_bytes)
        rows, _single = _parse_rows(body, loaded, max_rows)
        scores = await run_in_threadpool(_finite_scores, loaded, rows)
        threshold = loaded.risk_threshold
        return Response(pydantic_core.to_json({  # pydantic-core's serializer: 3x json.dumps on 1,000 scores
            "model_version": loaded.version, "algorithm": loaded.algorithm, "risk_threshold": threshold,
            "n_rows": len(scores), "scores": [{"score": s, "risk": s >= threshold} for s in scores]}),
            media_type="application/json")

    @app.get("/v1/model", response_model=ModelInfo, responses={503: _ERRORS[503]},
             summary="The scorer serving now: version, algorithm, sha256, runtime, input schema")
    def model():
        loaded = service.current
        if loaded is None:
            return _unavailable(service)
        return JSONResponse({"status": "ok", **service.status(), **loaded.describe(),
                             "model_version": loaded.version, "loaded_at": loaded.loaded_at})

    @app.get("/healthz", response_model=Health, responses={503: _ERRORS[503]},
             summary="200 with the version when a scorer is loaded, 503 when none")
    def healthz():
        loaded = service.current
        if loaded is None:
            return _unavailable(service)
        return JSONResponse({"status": "ok", **service.status(), "model_version": loaded.version})

    openapi_cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the request body of /v1/score generated from the serving scorer's schema."""
        if "base" not in openapi_cache:
            openapi_cache["base"] = get_openapi(title=app.title, version=app.version, description=app.description,
                                                routes=app.routes)
        loaded = service.current
        key = None if loaded is None else (loaded.version, loaded.model_sha256)
        if openapi_cache.get("key") != key or "doc" not in openapi_cache:
            doc = copy.deepcopy(openapi_cache["base"])
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            record = (dict(loaded.record_json_schema) if loaded is not None
                      else {"type": "object", "description": "no scorer loaded: the schema is not known yet"})
            record["title"] = "ScoreRecord"
            schemas["ScoreRecord"] = record
            schemas["ScoreRequest"] = {"anyOf": [
                {"$ref": "#/components/schemas/ScoreRecord"},
                {"type": "array", "items": {"$ref": "#/components/schemas/ScoreRecord"}, "minItems": 1,
                 "maxItems": max_rows}]}
            openapi_cache.update(key=key, doc=doc)
        return openapi_cache["doc"]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# ----------------------------------------------------------------------------------------- running it


def serve(registry_root: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          poll_seconds: float = 0.5, artifact: str | Path | None = None, max_rows: int = 10_000) -> None:
    """Run the app with uvicorn until interrupted (no access log: one line per request would dominate)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(registry_root, poll_seconds=poll_seconds, max_rows=max_rows, artifact=artifact)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refresh_assets.serving.app", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--registry", help="registry root: serve its champion's published scorer, hot-swapped")
    source.add_argument("--artifact", help="one scorer folder (scorer.json + model file): serve it, no registry")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    parser.add_argument("--max-rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    serve(args.registry, host=args.host, port=args.port, poll_seconds=args.poll_seconds, artifact=args.artifact,
          max_rows=args.max_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
