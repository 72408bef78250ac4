"""Unit tests for refresh_assets.core.artifacts: path safety, atomic writes, hashes, models, output folders."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core import artifacts
from refresh_assets.core.artifacts import (
    ModelIntegrityError,
    OutputStore,
    OutputStoreError,
    UnsafePathError,
    UntrustedModelError,
)

def _leftover_temp_files(folder: Path) -> list[str]:
    return [path.name for path in folder.rglob(".tmp-*")]


# --------------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["../x", "/etc", "a/b", "..", ".", "", "a\\b", "a\x00b", "a b", "caf\u00e9", ".staging-x", "x" * 256],
)
def test_safe_component_refuses_anything_that_is_not_one_plain_name(value: str) -> None:
    with pytest.raises(UnsafePathError) as caught:
        artifacts.safe_component(value, "partition_key")
    assert "partition_key" in str(caught.value)


def test_safe_component_refuses_non_strings_and_names_the_value() -> None:
    with pytest.raises(UnsafePathError, match="run_id"):
        artifacts.safe_component(None, "run_id")  # type: ignore[arg-type]
    with pytest.raises(UnsafePathError, match=r"'\.\./x'"):
        artifacts.safe_component("../x", "asset")


@pytest.mark.parametrize("value", ["2026-03-02", "run-1a2b", "churn_model.v1", "2026-03-02T00:00"])
def test_safe_component_accepts_plain_names(value: str) -> None:
    assert artifacts.safe_component(value, "x") == value


def test_safe_join_stays_inside_root(tmp_path: Path) -> None:
    assert artifacts.safe_join(tmp_path, "scores", "2026-03-02") == tmp_path.resolve() / "scores" / "2026-03-02"
    for bad_parts in (("..", "x"), ("a/b",), ("/etc",), ("ok", "../x")):
        with pytest.raises(UnsafePathError):
            artifacts.safe_join(tmp_path, *bad_parts)


def test_safe_join_refuses_a_symlink_that_leads_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        artifacts.safe_join(root, "escape", "file.txt")


# --------------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------------


def test_atomic_writers_round_trip_and_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "new_dir" / "blob.bin"  # missing parent folders are created
    artifacts.atomic_write_bytes(target, b"first")
    artifacts.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"

    artifacts.atomic_write_text(tmp_path / "note.txt", "h\u00e9llo")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "h\u00e9llo"

    artifacts.atomic_write_json(tmp_path / "obj.json", {"b": 1, "a": dt.date(2026, 3, 2)})
    text = (tmp_path / "obj.json").read_text()
    assert text == '{\n  "a": "2026-03-02",\n  "b": 1\n}\n'  # sorted keys, indent 2, dates via str()
    assert _leftover_temp_files(tmp_path) == []


def test_atomic_files_get_umask_permissions_not_mkstemp_0600(tmp_path: Path) -> None:
    path = artifacts.atomic_write_bytes(tmp_path / "f", b"x")
    current_umask = os.umask(0o022)
    os.umask(current_umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask


def test_atomic_write_parquet_round_trips_a_dataset_like_frame(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "entity_id": np.array([1, 2, 3], dtype="int64"),
            "as_of_date": [dt.date(2026, 3, 2)] * 3,
            "platform": ["ios", "android", None],
            "days_since_last_purchase": [1.5, np.nan, 3.0],
            "label": pd.array([0, 1, None], dtype="Int64"),
        }
    )
    path = artifacts.atomic_write_parquet(tmp_path / "d.parquet", frame)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_failed_replace_keeps_old_content_and_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.json"
    artifacts.atomic_write_json(target, {"version": "old"})

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        artifacts.atomic_write_json(target, {"version": "new"})
    assert json.loads(target.read_text()) == {"version": "old"}
    assert _leftover_temp_files(tmp_path) == []


def test_writer_failing_half_way_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    target = tmp_path / "scores.parquet"
    old = pd.DataFrame({"score": [0.1, 0.2]})
    artifacts.atomic_write_parquet(target, old)

    def half_writer(table: object, handle: object) -> None:
        handle.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # even a non-Exception interruption must clean up

    monkeypatch.setattr(pq, "write_table", half_writer)
    with pytest.raises(KeyboardInterrupt):
        artifacts.atomic_write_parquet(target, pd.DataFrame({"score": [0.9]}))
    pd.testing.assert_frame_equal(pd.read_parquet(target), old)
    assert _leftover_temp_files(tmp_path) == []


# --------------------------------------------------------------------------------------------------------
# Hashes and provenance
# --------------------------------------------------------------------------------------------------------


def test_sha256_file_matches_the_published_test_vector(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    # FIPS 180-2 example: SHA-256("abc")
    assert artifacts.sha256_file(tmp_path / "abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_frame_hash_depends_on_content_not_on_how_the_frame_was_built() -> None:
    base = pd.DataFrame({"entity_id": [1, 2], "platform": ["ios", "android"], "spend": [0.0, 2.5]})
    same_other_index = pd.DataFrame(
        {"entity_id": [1, 2], "platform": ["ios", "android"], "spend": [0.0, 2.5]}, index=[10, 11]
    )
    assert artifacts.frame_hash(base) == artifacts.frame_hash(same_other_index)
    assert len(artifacts.frame_hash(base)) == 64

    changed_value = base.assign(spend=[0.0, 2.6])
    renamed = base.rename(columns={"spend": "spend_28d"})
    other_dtype = base.assign(entity_id=base["entity_id"].astype("float64"))
    reordered = base.iloc[::-1]
    hashes = {artifacts.frame_hash(frame) for frame in (base, changed_value, renamed, other_dtype, reordered)}
    assert len(hashes) == 5


def test_frame_hash_handles_empty_frames() -> None:
    no_rows = pd.DataFrame({"a": pd.Series([], dtype="int64")})
    no_columns = pd.DataFrame(index=range(3))
    assert artifacts.frame_hash(no_rows) != artifacts.frame_hash(pd.DataFrame({"b": pd.Series([], dtype="int64")}))
    assert artifacts.frame_hash(no_columns) != artifacts.frame_hash(pd.DataFrame(index=range(4)))


def test_library_versions_lists_the_recorded_libraries() -> None:
    import platform

    versions = artifacts.library_versions()
    assert set(versions) == {"dagster", "scikit-learn", "pandas", "numpy", "duckdb", "evidently", "skops", "python"}
    assert versions["pandas"] == pd.__version__
    assert versions["python"] == platform.python_version()


def test_code_version_is_none_when_git_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    artifacts.code_version.cache_clear()
    monkeypatch.setattr(artifacts.subprocess, "run", no_git)
    try:
        assert artifacts.code_version() is None
    finally:
        artifacts.code_version.cache_clear()


def test_code_version_reads_the_commit_of_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    calls: list[tuple[object, object]] = []

    def fake_git(args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append((args, kwargs.get("cwd")))
        return subprocess.CompletedProcess(args, 0, stdout=commit + "\n", stderr="")

    artifacts.code_version.cache_clear()
    monkeypatch.setattr(artifacts.subprocess, "run", fake_git)
    try:
        assert artifacts.code_version() == commit
        assert artifacts.code_version() == commit
        assert len(calls) == 1  # cached
        assert calls[0][0] == ["git", "rev-parse", "HEAD"]
        assert Path(str(calls[0][1])) == Path(artifacts.__file__).resolve().parent
    finally:
        artifacts.code_version.cache_clear()


# --------------------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------------------


class NotAllowListed:
    """A harmless stand-in for a class an attacker could smuggle into a model file."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def _training_frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    rows = 40
    frame = pd.DataFrame(
        {
            "platform": rng.choice(["ios", "android"], rows).astype(object),
            "country": rng.choice(["US", "GB", "DE"], rows).astype(object),
            "tenure_days": rng.integers(0, 60, rows).astype(float),
            "days_since_last_purchase": rng.random(rows) * 10,
        }
    )
    frame.loc[[1, 5], "country"] = None
    frame.loc[[2, 9, 11], "days_since_last_purchase"] = np.nan
    label = (frame["tenure_days"] < 30).to_numpy(dtype=int)
    return frame, label


def _pipeline(classifier: object) -> object:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = Pipeline(
        [("impute", SimpleImputer(strategy="most_frequent")), ("onehot", OneHotEncoder(handle_unknown="ignore"))]
    )
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    features = ColumnTransformer(
        [("cat", categorical, ["platform", "country"]), ("num", numeric, ["tenure_days", "days_since_last_purchase"])]
    )
    return Pipeline([("features", features), ("model", classifier)])


def _classifier(name: str) -> object:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression

    if name == "hgb":
        return HistGradientBoostingClassifier(max_iter=5, random_state=0)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    if name == "logistic":
        return LogisticRegression(max_iter=200)
    return VotingClassifier(
        [
            ("lr", LogisticRegression(max_iter=200)),
            ("rf", RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)),
            ("hgb", HistGradientBoostingClassifier(max_iter=5, random_state=0)),
        ],
        voting="soft",
    )


@pytest.fixture(scope="module")
def fitted_logistic() -> object:
    frame, label = _training_frame()
    return _pipeline(_classifier("logistic")).fit(frame, label)


@pytest.mark.parametrize("name", ["hgb", "random_forest", "logistic", "soft_voting"])
def test_fitted_pipelines_round_trip_under_the_trusted_types(tmp_path: Path, name: str) -> None:
    frame, label = _training_frame()
    model = _pipeline(_classifier(name)).fit(frame, label)
    path = tmp_path / "model.skops"

    sha = artifacts.save_model(model, path)

    assert sha == artifacts.sha256_file(path)
    loaded = artifacts.load_model(path, expected_sha256=sha)
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert _leftover_temp_files(tmp_path) == []


def test_flipped_byte_is_refused_naming_both_hashes(tmp_path: Path, fitted_logistic: object) -> None:
    path = tmp_path / "model.skops"
    sha = artifacts.save_model(fitted_logistic, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    tampered_sha = hashlib.sha256(bytes(data)).hexdigest()

    with pytest.raises(ModelIntegrityError) as caught:
        artifacts.load_model(path, expected_sha256=sha)
    assert sha in str(caught.value) and tampered_sha in str(caught.value)


def test_garbage_file_without_expected_hash_is_an_integrity_error(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"not a zip file")
    with pytest.raises(ModelIntegrityError, match="not a readable skops"):
        artifacts.load_model(tmp_path / "model.skops", expected_sha256=None)


def test_model_holding_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    import skops.io

    smuggled_name = f"{__name__}.NotAllowListed"
    path = tmp_path / "evil.skops"
    path.write_bytes(skops.io.dumps({"model": NotAllowListed()}))

    with pytest.raises(UntrustedModelError) as caught:
        artifacts.load_model(path, expected_sha256=artifacts.sha256_file(path))  # hash matches: types still checked
    assert smuggled_name in str(caught.value)

    with pytest.raises(UntrustedModelError):  # and such a model is never written in the first place
        artifacts.save_model({"model": NotAllowListed()}, tmp_path / "never.skops")
    assert not (tmp_path / "never.skops").exists()


def test_trusted_package_function_that_writes_files_is_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    file_writer = FunctionTransformer(func=np.savetxt, kw_args={"fname": str(tmp_path / "x")})
    with pytest.raises(UntrustedModelError, match="numpy.savetxt"):
        artifacts.save_model(file_writer, tmp_path / "m.skops")


@pytest.mark.parametrize(
    ("type_name", "trusted"),
    [
        ("sklearn.tree._tree.Tree", True),
        ("numpy.dtype", True),
        ("builtins.object", True),
        ("functools.partial", True),
        ("builtins.eval", False),
        ("builtins.exec", False),
        ("numpyevil.thing", False),
        ("sklearnx.Tree", False),
        ("os.system", False),
        ("functools.reduce", False),
        ("numpy.load", False),
        ("numpy.savetxt", False),
        ("sklearn.datasets._openml.fetch_openml", False),
        ("sklearn.utils._testing.assert_run_python_script_without_output", False),
    ],
)
def test_trust_is_by_whole_module_prefix_or_exact_name(type_name: str, trusted: bool) -> None:
    assert artifacts.is_trusted_type(type_name) is trusted


# --------------------------------------------------------------------------------------------------------
# Output folders
# --------------------------------------------------------------------------------------------------------


def _assert_output_is_complete(store: OutputStore, output_dir: Path) -> dict:
    manifest = store.read_manifest(output_dir)
    on_disk = sorted(p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*") if p.is_file())
    assert on_disk == sorted([*manifest["files"], "manifest.json"])
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == artifacts.sha256_file(output_dir / name)
        assert entry["bytes"] == (output_dir / name).stat().st_size
    return manifest


def test_commit_publishes_a_folder_with_a_manifest_of_every_file(tmp_path: Path, fitted_logistic: object) -> None:
    store = OutputStore(tmp_path)
    scores = pd.DataFrame({"entity_id": [1, 2], "score": [0.25, 0.75]})

    with store.stage("scores", "2026-03-02", "run-1a2b") as out:
        out.write_parquet("scores.parquet", scores)
        out.write_json("summary.json", {"rows": 2})
        model_sha = out.save_model("model.skops", fitted_logistic)
        (out.path / "report.html").write_text("<html></html>")  # written by another library
        out.add_file("report.html")
        assert store.current("scores", "2026-03-02") is None  # nothing visible before commit
        assert store.list_outputs("scores", "2026-03-02") == []
        final_dir = out.commit({"rows": 2, "dataset_hash": "abc"})

    assert final_dir == tmp_path.resolve() / "scores" / "2026-03-02" / "run-1a2b"
    assert store.current("scores", "2026-03-02") == final_dir
    manifest = _assert_output_is_complete(store, final_dir)
    assert set(manifest["files"]) == {"scores.parquet", "summary.json", "model.skops", "report.html"}
    assert manifest["files"]["model.skops"]["sha256"] == model_sha
    assert manifest["rows"] == 2 and manifest["dataset_hash"] == "abc"
    assert (manifest["asset"], manifest["partition_key"], manifest["run_id"]) == ("scores", "2026-03-02", "run-1a2b")
    assert "pandas" in manifest["library_versions"] and "code_version" in manifest
    pd.testing.assert_frame_equal(pd.read_parquet(final_dir / "scores.parquet"), scores)
    assert [p.name for p in final_dir.parent.iterdir() if p.name.startswith(".")] == []


def test_exception_inside_with_leaves_current_and_outputs_unchanged(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    with store.stage("dataset", "2026-03-02", "run-1") as out:
        out.write_text("a.txt", "old")
        first = out.commit({})

    with pytest.raises(RuntimeError, match="boom"):
        with store.stage("dataset", "2026-03-02", "run-2") as out:
            out.write_text("a.txt", "new")
            raise RuntimeError("boom")

    assert store.current("dataset", "2026-03-02") == first
    assert store.list_outputs("dataset", "2026-03-02") == [first]
    assert sorted(p.name for p in first.parent.iterdir()) == ["current.json", "run-1"]


def test_leaving_the_block_without_commit_discards_the_staging(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    with store.stage("dataset", "p1", "run-1") as out:
        out.write_text("a.txt", "x")
    assert not out.path.exists()
    assert store.current("dataset", "p1") is None
    with pytest.raises(OutputStoreError, match="aborted"):
        out.write_text("b.txt", "y")


def test_retried_commit_with_the_same_run_id_gets_a_suffix(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    committed = []
    for text in ("attempt 1", "attempt 2", "attempt 3"):
        with store.stage("candidates", "2026-03-02", "run-7") as out:
            out.write_text("note.txt", text)
            committed.append(out.commit({}))

    assert [p.name for p in committed] == ["run-7", "run-7-2", "run-7-3"]
    current = store.current("candidates", "2026-03-02")
    assert current == committed[-1]
    assert (current / "note.txt").read_text() == "attempt 3"
    assert store.list_outputs("candidates", "2026-03-02") == committed


def test_list_outputs_is_oldest_first_and_ignores_staging_and_unfinished_folders(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    outputs = []
    for run_id in ("run-z", "run-a"):  # name order is the reverse of commit order
        with store.stage("scores", "p", run_id) as out:
            out.write_text("x.txt", run_id)
            outputs.append(out.commit({}))
    open_stage = store.stage("scores", "p", "run-m")
    open_stage.write_text("x.txt", "in progress")
    (outputs[0].parent / "stray-folder").mkdir()  # no manifest: not an output

    assert store.list_outputs("scores", "p") == outputs
    assert store.list_outputs("scores", "never-written") == []
    open_stage.abort()


def test_commit_refuses_a_second_commit_and_reserved_names(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    out = store.stage("a", "p", "r")
    for reserved in ("manifest.json", "current.json", "../x", ".hidden"):
        with pytest.raises(UnsafePathError):
            out.write_text(reserved, "x")
    with pytest.raises(FileNotFoundError, match="report.html"):
        out.add_file("report.html")
    out.commit({})
    with pytest.raises(OutputStoreError, match="already committed"):
        out.commit({})


def test_failed_rename_leaves_previous_output_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OutputStore(tmp_path)
    with store.stage("a", "p", "r1") as out:
        first = out.commit({})

    def failing_rename(src: object, dst: object) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(artifacts.os, "rename", failing_rename)
    with pytest.raises(OSError, match="I/O error"):
        with store.stage("a", "p", "r2") as out:
            out.write_text("x.txt", "x")
            out.commit({})
    assert store.current("a", "p") == first
    assert store.list_outputs("a", "p") == [first]


def test_current_refuses_a_pointer_to_a_folder_without_manifest(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    partition_dir = tmp_path / "a" / "p"
    (partition_dir / "half").mkdir(parents=True)
    artifacts.atomic_write_json(partition_dir / "current.json", {"run_dir": "half"})
    with pytest.raises(OutputStoreError, match="no manifest.json"):
        store.current("a", "p")
    artifacts.atomic_write_json(partition_dir / "current.json", {"run_dir": "../../elsewhere"})
    with pytest.raises(OutputStoreError, match="run_dir"):
        store.current("a", "p")


def test_clean_stale_staging_removes_only_old_debris(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    with store.stage("a", "p", "kept") as out:
        committed = out.commit({})
    stale = store.stage("a", "p", "killed")
    stale.write_text("x.txt", "x")
    stale_tmp = committed.parent / ".tmp-abc-current.json"
    stale_tmp.write_text("{")
    fresh = store.stage("a", "p", "running")
    two_hours_ago = time.time() - 7200
    for path in (stale.path / "x.txt", stale.path, stale_tmp):
        os.utime(path, (two_hours_ago, two_hours_ago))

    assert store.clean_stale_staging(older_than_seconds=3600) == 2
    assert not stale.path.exists() and not stale_tmp.exists()
    assert fresh.path.exists() and committed.exists()
    assert store.clean_stale_staging(older_than_seconds=3600) == 0
    fresh.abort()


def _commit_then_sigkill_at(store: OutputStore, kill_point: str) -> None:
    """Runs in a forked child: start a commit and SIGKILL ourselves at ``kill_point`` (a real, uncatchable kill)."""
    real_replace, real_rename = os.replace, os.rename

    def replace(src: str, dst: str) -> None:
        if (kill_point, Path(dst).name) in (("manifest", "manifest.json"), ("pointer", "current.json")):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    def rename(src: str, dst: str) -> None:
        if kill_point == "rename":
            os.kill(os.getpid(), signal.SIGKILL)
        real_rename(src, dst)

    artifacts.os.replace, artifacts.os.rename = replace, rename  # type: ignore[assignment]
    out = store.stage("scores", "p", "run-killed")
    out.write_text("scores.txt", "partial run")
    out.write_json("summary.json", {"rows": 1})
    out.commit({})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a writer mid-commit cheaply")
@pytest.mark.parametrize("kill_point", ["manifest", "rename", "pointer"])
def test_sigkill_during_commit_never_exposes_a_partial_output(tmp_path: Path, kill_point: str) -> None:
    store = OutputStore(tmp_path)
    with store.stage("scores", "p", "run-good") as out:
        out.write_text("scores.txt", "good")
        previous = out.commit({})

    # fork, not a fresh interpreter: the child needs no imports, so this costs milliseconds.
    child_pid = os.fork()
    if child_pid == 0:  # pragma: no cover - child process
        try:
            _commit_then_sigkill_at(store, kill_point)
        finally:
            os._exit(3)  # reached only if the kill point was never hit
    _, status = os.waitpid(child_pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    assert store.current("scores", "p") == previous  # the pointer only ever moves to a complete output
    outputs = store.list_outputs("scores", "p")
    for output_dir in outputs:
        _assert_output_is_complete(store, output_dir)
    if kill_point == "pointer":  # renamed into place but not yet current: complete, just not current
        assert [p.name for p in outputs] == ["run-good", "run-killed"]
    else:
        assert outputs == [previous]
    visible = sorted(p.name for p in previous.parent.iterdir() if not p.name.startswith("."))
    assert visible == sorted(["current.json", *[p.name for p in outputs]])
    assert any(p.name.startswith(".staging-") for p in previous.parent.iterdir()) is (kill_point != "pointer")


_FILE_SIZE_LIMITED_WRITER = r"""
import resource, sys
import numpy as np, pandas as pd
from refresh_assets.core.artifacts import OutputStore
store = OutputStore(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # like a full disk: writes fail with EFBIG
big = pd.DataFrame({"x": np.random.default_rng(0).random(200_000)})
try:
    with store.stage("training_dataset", "2026-03-02", "run-big") as out:
        out.write_parquet("train.parquet", big)
        out.commit({})
except OSError as error:
    print(f"{type(error).__name__}: {error}")
"""


def test_a_write_beyond_the_file_size_limit_fails_clearly_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a child process (root ignores chmod): the write fails with EFBIG, as on a full disk."""
    import subprocess
    import sys

    store = artifacts.OutputStore(tmp_path)
    with store.stage("training_dataset", "2026-03-02", "run-ok") as out:
        out.write_json("small.json", {"rows": 1})
        first = out.commit({})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    printed = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMITED_WRITER, str(tmp_path)], capture_output=True,
                             text=True, timeout=120, check=True).stdout.strip()
    assert printed.startswith("OutputWriteError: [Errno 27] cannot write train.parquet in ")
    assert "file size limit reached; its previous content is unchanged" in printed
    assert store.current("training_dataset", "2026-03-02") == first
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no temp file, no staging


def test_an_unpublished_commit_is_kept_but_not_current_until_published(tmp_path: Path) -> None:
    """commit(publish=False) then publish(): how a dataset waits for its checks before readers see it."""
    store = artifacts.OutputStore(tmp_path)
    with store.stage("training_dataset", "2026-03-02", "run-accepted") as out:
        out.write_json("rows.json", {"rows": 1})
        accepted = out.commit({})
    with store.stage("training_dataset", "2026-03-02", "run-pending") as out:
        out.write_json("rows.json", {"rows": 2})
        pending = out.commit({}, publish=False)
    assert store.current("training_dataset", "2026-03-02") == accepted
    assert store.list_outputs("training_dataset", "2026-03-02") == [accepted, pending]
    assert store.publish("training_dataset", "2026-03-02", str(pending)) == pending
    assert store.current("training_dataset", "2026-03-02") == pending
    pointer = json.loads((pending.parent / "current.json").read_text())
    assert pointer["run_id"] == "run-pending"
    assert pointer["manifest_sha256"] == artifacts.sha256_file(pending / "manifest.json")
    with pytest.raises(artifacts.OutputStoreError, match="is not an output of training_dataset 2026-03-03"):
        store.publish("training_dataset", "2026-03-03", pending)
    assert store.current("training_dataset", "2026-03-03") is None


def test_a_model_loaded_again_in_the_process_is_an_independent_copy_of_the_same_bytes(tmp_path: Path) -> None:
    """load_model keeps what skops built from a file (keyed by the bytes' sha256) and hands out deep copies."""
    from sklearn.linear_model import LogisticRegression

    artifacts.clear_model_caches()
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    path = tmp_path / "model.skops"
    sha = artifacts.save_model(LogisticRegression().fit(X, y), path)
    first = artifacts.load_model(path, sha)
    first.coef_[:] = 99.0  # a caller changing its copy changes nothing for the next reader
    second = artifacts.load_model(path, sha)
    assert second is not first and second.coef_[0, 0] != 99.0
    np.testing.assert_array_equal(second.predict_proba(X), LogisticRegression().fit(X, y).predict_proba(X))
    # the cache never skips the hash: other bytes at the same path are refused against the recorded sha256
    artifacts.save_model(LogisticRegression(C=0.01).fit(X, y), path)
    with pytest.raises(ModelIntegrityError, match="expected"):
        artifacts.load_model(path, sha)


def test_the_allow_list_applies_to_a_payload_checked_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The types of a payload are read once per process; the allow-list is applied on every check."""
    from sklearn.linear_model import LogisticRegression

    artifacts.clear_model_caches()
    X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    path = tmp_path / "model.skops"
    sha = artifacts.save_model(LogisticRegression().fit(X, y), path)
    artifacts.load_model(path, sha)
    monkeypatch.setattr(artifacts, "is_trusted_type", lambda name: False)
    if artifacts.check_model_types(path.read_bytes()):  # a plain LogisticRegression may need no extra type
        with pytest.raises(UntrustedModelError):
            artifacts.load_model(path, sha)
