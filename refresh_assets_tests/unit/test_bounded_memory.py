"""Reading only the rows a step uses (issue 21, bounded memory at 1M players): the same values, dtypes and
tuning inputs as reading the whole frame and subsampling it in memory."""

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refresh_assets.core import models
from refresh_assets.core.artifacts import OutputStore, frame_hash
from refresh_assets.core.object_store import (
    OutputIntegrityError,
    open_output_parquet,
    parquet_rows,
    read_output_parquet,
)


def training_like(n: int, seed: int = 3) -> pd.DataFrame:
    """The dtypes a training frame holds: int64 keys, dates, floats with NaN, a nullable Int64 with NA, text
    with None, an int8 label."""
    rng = np.random.default_rng(seed)
    level = pd.array(rng.integers(1, 60, n), dtype="Int64")
    level[rng.random(n) < 0.05] = pd.NA
    platform = np.array(["ios", "android", None], dtype=object)[rng.integers(0, 3, n)]
    minutes = rng.gamma(2.0, 5.0, n)
    minutes[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "entity_id": np.arange(1, n + 1, dtype=np.int64),
        "as_of_date": pd.to_datetime("2026-03-02") + pd.to_timedelta(np.sort(rng.integers(0, 8, n)) * 7, "D"),
        "minutes_28d": minutes,
        "level": level,
        "platform": platform,
        "country": np.array(["US", "DE", "JP"], dtype=object)[rng.integers(0, 3, n)],
        "label": rng.integers(0, 2, n).astype("int8"),
    })


def parquet_file(frame: pd.DataFrame, row_group_size: int) -> pq.ParquetFile:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame), buffer, row_group_size=row_group_size)
    return pq.ParquetFile(pa.BufferReader(buffer.getvalue()))


@pytest.mark.parametrize("row_group_size", [97, 1000, 10_000])
def test_parquet_rows_equals_the_whole_frame_subsampled(row_group_size):
    frame = training_like(5_000)
    parquet = parquet_file(frame, row_group_size)
    whole = parquet.read().to_pandas()
    for rows in (models.training_positions(len(frame), 700, seed=42), np.arange(len(frame)),
                 np.array([0, 96, 97, 4_999]), np.array([], dtype=np.int64)):
        expected = whole.iloc[rows].reset_index(drop=True)
        got = parquet_rows(parquet, rows)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert frame_hash(got) == frame_hash(expected)


def test_parquet_rows_refuses_unsorted_or_out_of_range_positions():
    parquet = parquet_file(training_like(100), 30)
    with pytest.raises(ValueError, match="sorted, unique"):
        parquet_rows(parquet, [5, 3])
    with pytest.raises(ValueError, match="sorted, unique"):
        parquet_rows(parquet, [3, 3])
    with pytest.raises(ValueError, match="beyond the 100 rows"):
        parquet_rows(parquet, [99, 100])


def test_training_positions_are_the_rows_tune_draws():
    assert np.array_equal(models.training_positions(50, None, 1), np.arange(50))
    assert np.array_equal(models.training_positions(50, 50, 1), np.arange(50))
    rows = models.training_positions(1_000, 300, 7)
    assert len(rows) == 300 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, np.sort(np.random.default_rng(7).choice(1_000, size=300, replace=False)))
    with pytest.raises(ValueError, match="max_rows must be >= 1"):
        models.training_positions(10, 0, 1)


def test_the_subsample_read_from_disk_gives_tune_the_same_inputs():
    """A candidate reads only models.training_positions of train.parquet; tune then keeps them all. Its inputs
    (features, labels, dates) must be the ones the whole frame subsampled in memory gives, bit for bit."""
    frame = training_like(6_000)
    parquet = parquet_file(frame, 1_000)
    whole = parquet.read().to_pandas()
    max_rows, seed = 800, 42

    def inputs(train):
        numeric, categorical = models.feature_columns(train)
        return models._training_rows(train[numeric + categorical], train["label"].to_numpy(),
                                     train["as_of_date"].to_numpy(), max_rows, seed)

    sub = parquet_rows(parquet, models.training_positions(len(whole), max_rows, seed))
    (x_whole, y_whole, d_whole), (x_sub, y_sub, d_sub) = inputs(whole), inputs(sub)
    pd.testing.assert_frame_equal(x_sub, x_whole, check_exact=True)
    assert np.array_equal(y_sub, y_whole) and np.array_equal(d_sub, d_whole)


def test_open_output_parquet_checks_the_file_against_its_manifest(tmp_path):
    store = OutputStore(tmp_path)
    frame = training_like(500)
    with store.stage("training_dataset", "2026-03-02", "run1") as out:
        out.write_parquet("train.parquet", frame)
        committed = out.commit({})
    manifest = store.read_manifest(committed)
    rows = models.training_positions(500, 120, 5)
    pd.testing.assert_frame_equal(parquet_rows(open_output_parquet(committed, "train.parquet", manifest), rows),
                                  read_output_parquet(committed, "train.parquet", manifest).iloc[rows]
                                  .reset_index(drop=True), check_exact=True)
    (committed / "train.parquet").write_bytes(b"PAR1 not the committed file")
    with pytest.raises(OutputIntegrityError, match="changed after it was committed"):
        open_output_parquet(committed, "train.parquet", manifest)


def test_a_candidate_reads_only_its_subsample_and_a_null_label_still_reaches_tune(tmp_path):
    from refresh_assets.assets.candidates import _training_frame
    from refresh_assets.config import TrainingConfig

    store = OutputStore(tmp_path)
    frame = training_like(3_000)
    with_null = frame.assign(label=frame["label"].astype("Float64"))
    with_null.loc[2_500, "label"] = pd.NA
    committed = {}
    for name, data in (("clean", frame), ("null_label", with_null)):
        with store.stage("training_dataset", "2026-03-02", name) as out:
            out.write_parquet("train.parquet", data)
            committed[name] = out.commit({})
    config = TrainingConfig(max_training_rows=400, random_seed=11)
    manifest = store.read_manifest(committed["clean"])
    train, n_rows = _training_frame(committed["clean"], manifest, config)
    whole = read_output_parquet(committed["clean"], "train.parquet", manifest)
    assert n_rows == 3_000 and len(train) == 400
    pd.testing.assert_frame_equal(train, whole.iloc[models.training_positions(3_000, 400, 11)]
                                  .reset_index(drop=True), check_exact=True)
    # a NULL label anywhere (not only in the subsample): the whole frame, for tune to refuse as it always did
    train, n_rows = _training_frame(committed["null_label"], store.read_manifest(committed["null_label"]), config)
    assert len(train) == n_rows == 3_000
    numeric, categorical = models.feature_columns(train)
    with pytest.raises(ValueError, match="missing labels"):
        models.tune("logreg", train[numeric + categorical], train["label"].to_numpy(), train["as_of_date"].to_numpy(),
                    n_iter=1, max_rows=config.max_training_rows, seed=config.random_seed)


def test_the_scale_benchmark_reuses_a_simulated_warehouse_only_when_complete_and_of_the_same_parameters(tmp_path):
    import json

    from refresh_assets.core.simulate import SimulationConfig
    from refresh_assets_tests.benchmarks.bench_scale import MARKER, cached_warehouse

    cfg = SimulationConfig(n_players=300, days=40, warmup_days=10, seed=17)
    path, info = cached_warehouse(cfg, tmp_path)
    assert not info["reused"] and path.exists() and path.parent.name == "warehouse-300-seed17"
    marker = json.loads((path.parent / MARKER).read_text())
    assert marker["params"]["n_players"] == 300 and marker["summary"]["session_rows"] > 0
    written = path.stat().st_mtime_ns
    again, info = cached_warehouse(cfg, tmp_path)
    assert info["reused"] and again == path and path.stat().st_mtime_ns == written
    # other parameters under the same name: simulated again, never read as the old one
    _, info = cached_warehouse(SimulationConfig(n_players=300, days=41, warmup_days=10, seed=17), tmp_path)
    assert not info["reused"] and json.loads((path.parent / MARKER).read_text())["params"]["days"] == 41
    # a folder without its marker (a simulation cut short) is never reused
    (path.parent / MARKER).unlink()
    _, info = cached_warehouse(SimulationConfig(n_players=300, days=41, warmup_days=10, seed=17), tmp_path)
    assert not info["reused"] and (path.parent / MARKER).exists()


def test_the_scale_benchmark_says_simulated_when_its_child_simulated_the_warehouse(tmp_path, monkeypatch):
    """The 1M warehouse is simulated in a child process, then found by the parent: the row must still say it was
    simulated in this run, not reused (as it wrongly did in the run of 2026-12-05 22:21Z)."""
    import json
    import subprocess

    from refresh_assets.core.simulate import SimulationConfig
    from refresh_assets_tests.benchmarks import bench_scale

    cfg = SimulationConfig(n_players=300, seed=bench_scale.SEED)  # the benchmark's own settings: the child path
    real = bench_scale.cached_warehouse
    monkeypatch.setattr(bench_scale, "CACHE_MIN_PLAYERS", 300)
    monkeypatch.setattr(bench_scale, "cached_warehouse", lambda c, root=tmp_path: real(c, root))

    def child(args, **kwargs):  # what `bench_scale simulate N` does in its own process
        path, info = real(cfg, tmp_path)
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps({"path": str(path), **info}) + "\n", stderr="")

    monkeypatch.setattr(bench_scale.subprocess, "run", child)
    _, info = bench_scale._warehouse(cfg, tmp_path)
    assert info["reused"] is False and info["summary"]["session_rows"] > 0
    _, info = bench_scale._warehouse(cfg, tmp_path)  # the next run finds it
    assert info["reused"] is True
