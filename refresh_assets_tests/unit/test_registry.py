"""Unit tests for refresh_assets.core.registry: versions, champion events, integrity and DuckDB locking."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import numpy as np
import pytest

from refresh_assets.core import artifacts, registry
from refresh_assets.core.artifacts import ModelIntegrityError
from refresh_assets.core.registry import (
    ModelRegistry,
    NoChampionError,
    RegistryLockedError,
    UnknownModelVersionError,
)

# The registry does not care what a model is, only that it is a trusted skops file. Plain dicts of numpy
# arrays keep these tests free of the sklearn import; artifacts' tests cover real pipelines.
def _model(name: str, coefficient: float) -> dict:
    return {"name": name, "coef": np.array([coefficient, -coefficient])}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, dict]]:
    folder = tmp_path_factory.mktemp("candidates")
    files = {}
    for name, coefficient in (("weak", 0.1), ("strong", 2.5)):
        model = _model(name, coefficient)
        path = folder / f"{name}.skops"
        files[name] = (path, artifacts.save_model(model, path), model)
    return files


def _assert_same_model(loaded: dict, expected: dict) -> None:
    assert loaded["name"] == expected["name"]
    np.testing.assert_array_equal(loaded["coef"], expected["coef"])


@pytest.fixture()
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry", lock_timeout_seconds=5)


def _promote(reg: ModelRegistry, path: Path, run_id: str, **overrides: object) -> registry.ModelVersion:
    fields = dict(
        algorithm="logistic",
        partition_key="2026-03-02",
        metrics={"roc_auc": 0.8},
        dataset_hash="d" * 64,
        run_id=run_id,
        reason="beats champion",
    )
    fields.update(overrides)
    return reg.promote(path, **fields)  # type: ignore[arg-type]


def test_empty_registry_has_no_champion(reg: ModelRegistry) -> None:
    assert reg.current_champion() is None
    assert reg.versions() == [] and reg.events() == []
    with pytest.raises(NoChampionError, match="no champion"):
        reg.load_model()
    assert reg.to_dict()["champion"] is None


def test_promote_twice_numbers_versions_and_moves_the_champion(reg: ModelRegistry, model_files: dict) -> None:
    weak_path, weak_sha, weak_model = model_files["weak"]
    strong_path, strong_sha, strong_model = model_files["strong"]

    first = _promote(reg, weak_path, "run-1", metrics={"roc_auc": 0.7, "log_loss": np.float64(0.5)})
    second = _promote(reg, strong_path, "run-2", algorithm="logistic_strong")

    assert (first.version, second.version) == (1, 2)
    assert reg.current_champion() == second
    assert [v.version for v in reg.versions()] == [1, 2]
    assert [(e.event_id, e.version, e.action, e.run_id) for e in reg.events()] == [
        (1, 1, "promote", "run-1"),
        (2, 2, "promote", "run-2"),
    ]
    stored = reg.get(1)
    assert stored == first
    assert stored.metrics == {"roc_auc": 0.7, "log_loss": 0.5}
    assert stored.created_at.tzinfo == timezone.utc
    assert Path(stored.model_path) == reg.root / "models" / "v1.skops"
    assert (stored.model_sha256, reg.get(2).model_sha256) == (weak_sha, strong_sha)
    assert artifacts.sha256_file(reg.get(2).model_path) == strong_sha

    _assert_same_model(reg.load_model(), strong_model)
    _assert_same_model(reg.load_model(1), weak_model)


def test_state_survives_reopening_the_registry(reg: ModelRegistry, model_files: dict) -> None:
    _promote(reg, model_files["weak"][0], "run-1")
    reopened = ModelRegistry(reg.root)
    assert [v.version for v in reopened.versions()] == [1]
    assert reopened.current_champion() == reg.current_champion()


def test_rollback_appends_an_event_and_keeps_versions(reg: ModelRegistry, model_files: dict) -> None:
    _promote(reg, model_files["weak"][0], "run-1")
    _promote(reg, model_files["strong"][0], "run-2")
    versions_before = reg.versions()

    rolled_back = reg.rollback(1, run_id="ops-1", reason="v2 drops revenue")

    assert rolled_back.version == 1
    assert reg.current_champion() == versions_before[0]
    assert reg.versions() == versions_before
    last_event = reg.events()[-1]
    assert (last_event.event_id, last_event.version, last_event.action) == (3, 1, "rollback")
    assert (last_event.run_id, last_event.reason, last_event.partition_key) == ("ops-1", "v2 drops revenue", None)
    _assert_same_model(reg.load_model(), model_files["weak"][2])


def test_rollback_to_an_unknown_version_lists_the_known_ones(reg: ModelRegistry, model_files: dict) -> None:
    _promote(reg, model_files["weak"][0], "run-1")
    _promote(reg, model_files["strong"][0], "run-2")
    with pytest.raises(UnknownModelVersionError) as caught:
        reg.rollback(99, run_id="ops-1", reason="typo")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == "model version 99 is not in the registry; known versions: [1, 2]"
    assert [e.action for e in reg.events()] == ["promote", "promote"]
    assert reg.current_champion().version == 2  # type: ignore[union-attr]


def test_tampered_champion_file_is_refused_on_load_and_rollback(reg: ModelRegistry, model_files: dict) -> None:
    first = _promote(reg, model_files["weak"][0], "run-1")
    _promote(reg, model_files["strong"][0], "run-2")
    data = bytearray(Path(first.model_path).read_bytes())
    data[-10] ^= 0xFF
    Path(first.model_path).write_bytes(bytes(data))

    with pytest.raises(ModelIntegrityError, match=first.model_sha256):
        reg.load_model(1)
    with pytest.raises(ModelIntegrityError, match="version 1"):
        reg.rollback(1, run_id="ops-1", reason="back")
    assert reg.current_champion().version == 2  # type: ignore[union-attr]

    Path(reg.get(2).model_path).write_bytes(b"swapped")
    with pytest.raises(ModelIntegrityError):
        reg.load_model()

    Path(reg.get(2).model_path).unlink()
    with pytest.raises(ModelIntegrityError, match=r"the model file of v2 \(.*\) is missing: .*refresh-assets rollback"):
        reg.load_model()


def test_failed_insert_leaves_champion_versions_and_files_unchanged(
    reg: ModelRegistry, model_files: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    _promote(reg, model_files["weak"][0], "run-1")
    versions_before, events_before = reg.versions(), reg.events()

    def failing_event_insert(*args: object, **kwargs: object) -> None:
        raise RuntimeError("insert failed")  # after the model_versions row was inserted in the transaction

    monkeypatch.setattr(ModelRegistry, "_insert_event", staticmethod(failing_event_insert))
    with pytest.raises(RuntimeError, match="insert failed"):
        _promote(reg, model_files["strong"][0], "run-2")

    assert reg.versions() == versions_before
    assert reg.events() == events_before
    assert reg.current_champion() == versions_before[0]
    assert sorted(p.name for p in (reg.root / "models").iterdir()) == ["v1.skops"]


def test_promote_refuses_a_file_that_is_not_the_evaluated_one(reg: ModelRegistry, model_files: dict) -> None:
    path, _, _ = model_files["weak"]
    with pytest.raises(ModelIntegrityError, match="expected 0000"):
        _promote(reg, path, "run-1", expected_sha256="0" * 64)
    assert reg.versions() == [] and list((reg.root / "models").iterdir()) == []


def test_promote_replaces_an_orphan_left_by_a_crashed_promote(reg: ModelRegistry, model_files: dict) -> None:
    (reg.root / "models" / "v1.skops").write_bytes(b"orphan from a killed run")
    path, sha, _ = model_files["weak"]
    promoted = _promote(reg, path, "run-1", expected_sha256=sha)
    assert promoted.version == 1
    assert artifacts.sha256_file(promoted.model_path) == sha


def test_cli_views_are_json_safe(reg: ModelRegistry, model_files: dict) -> None:
    _promote(reg, model_files["weak"][0], "run-1", metrics={"roc_auc": np.float32(0.5), "lift": math.nan})
    reg.rollback(1, run_id="ops-1", reason="again", partition_key="2026-03-03")

    whole = json.loads(json.dumps(reg.to_dict(), allow_nan=False))
    assert whole["champion"]["version"] == 1
    assert whole["champion"]["metrics"] == {"lift": None, "roc_auc": 0.5}
    assert [e["action"] for e in whole["events"]] == ["promote", "rollback"]

    history = json.loads(json.dumps(reg.history(), allow_nan=False))
    assert [(row["event_id"], row["action"], row["partition_key"], row["algorithm"]) for row in history] == [
        (1, "promote", "2026-03-02", "logistic"),
        (2, "rollback", "2026-03-03", "logistic"),
    ]


# --------------------------------------------------------------------------------------------------------
# Locking: DuckDB lets one process at a time open the file, so another process holds it here.
# --------------------------------------------------------------------------------------------------------

_HOLD_LOCK = (
    "import sys, time, duckdb\n"
    "connection = duckdb.connect(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "connection.close()\n"
)


@pytest.fixture()
def lock_holder(reg: ModelRegistry) -> Iterator:
    started: list[subprocess.Popen] = []

    def hold(seconds: float) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(reg.db_path), str(seconds)], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait(timeout=10)


def test_operation_waits_for_the_lock_then_succeeds(reg: ModelRegistry, model_files: dict, lock_holder) -> None:
    lock_holder(0.6)
    started = time.monotonic()
    promoted = _promote(reg, model_files["weak"][0], "run-1")
    waited = time.monotonic() - started
    assert waited > 0.5  # the holder kept the lock 0.6 s after saying so: we really waited for it
    assert promoted.version == 1 and reg.current_champion() == promoted


def test_operation_gives_up_with_registry_locked_error(reg: ModelRegistry, lock_holder) -> None:
    impatient = ModelRegistry(reg.root, lock_timeout_seconds=0.3)
    holder = lock_holder(30)
    started = time.monotonic()
    with pytest.raises(RegistryLockedError, match="stayed locked for 0.3s"):
        impatient.current_champion()
    assert 0.3 <= time.monotonic() - started < 5
    assert holder.poll() is None
