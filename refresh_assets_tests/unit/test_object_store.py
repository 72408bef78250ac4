"""Outputs on an object store, through fsspec's in-memory filesystem (``memory://``): the same layout,
manifest and current.json as the local store, committed files-then-manifest-then-pointer."""

import json
import uuid

import numpy as np
import pandas as pd
import pytest

from refresh_assets.core import object_store
from refresh_assets.core.artifacts import OutputStore, OutputStoreError, load_model, sha256_bytes
from refresh_assets.core.object_store import ObjectOutputStore, open_output_store, read_parquet

FRAME = pd.DataFrame({"entity_id": [1, 2, 3], "score": [0.1, 0.5, 0.9]})


@pytest.fixture
def bucket():
    """A fresh memory:// root, removed afterwards (the memory filesystem is shared by the whole process)."""
    from upath import UPath

    root = UPath(f"memory://bucket-{uuid.uuid4().hex[:8]}/outputs")
    yield root
    if root.exists():
        root.fs.rm(root.path, recursive=True)


def commit_one(store, run_id="run1", marker="first"):
    with store.stage("production_scores", "2026-03-02", run_id) as out:
        out.write_parquet("scores.parquet", FRAME)
        out.write_json("summary.json", {"marker": marker})
        return out.commit({"note": marker}), out.path


def test_a_url_selects_the_object_store_and_a_folder_the_local_one(bucket, tmp_path, monkeypatch):
    from refresh_assets.resources import ArtifactStore

    assert isinstance(open_output_store(str(bucket)), ObjectOutputStore)
    monkeypatch.setenv("REFRESH_ASSETS_OUTPUTS", str(bucket))
    assert str(ArtifactStore().store().root) == str(bucket)
    local = open_output_store(str(tmp_path))
    assert type(local) is OutputStore and local.root == tmp_path
    assert type(open_output_store(f"file://{tmp_path}")) is OutputStore


def test_write_commit_current_read(bucket):
    store = open_output_store(str(bucket))
    assert store.current("production_scores", "2026-03-02") is None

    final, staging = commit_one(store)
    assert not staging.exists(), "the local staging folder is removed once uploaded"
    assert str(final) == f"{bucket}/production_scores/2026-03-02/run1"
    assert store.current("production_scores", "2026-03-02") == final

    manifest = store.read_manifest(final)
    assert manifest["note"] == "first" and manifest["run_id"] == "run1"
    assert sorted(manifest["files"]) == ["scores.parquet", "summary.json"]
    for name, entry in manifest["files"].items():
        data = (final / name).read_bytes()
        assert sha256_bytes(data) == entry["sha256"] and len(data) == entry["bytes"]
    pd.testing.assert_frame_equal(read_parquet(final / "scores.parquet"), FRAME)

    pointer = json.loads((final.parent / "current.json").read_text())
    assert pointer["run_dir"] == "run1"
    assert pointer["manifest_sha256"] == sha256_bytes((final / "manifest.json").read_bytes())


def test_a_retried_run_commits_beside_the_first_and_moves_the_pointer(bucket):
    store = open_output_store(str(bucket))
    first, _ = commit_one(store, marker="first")
    second, _ = commit_one(store, marker="second")
    assert second.name == "run1-2"
    assert store.current("production_scores", "2026-03-02") == second
    assert [p.name for p in store.list_outputs("production_scores", "2026-03-02")] == ["run1", "run1-2"]
    assert store.read_manifest(first)["note"] == "first"


def test_an_upload_cut_before_the_manifest_is_never_an_output(bucket, monkeypatch):
    store = open_output_store(str(bucket))
    first, _ = commit_one(store, run_id="good")
    real_upload = object_store._upload

    def upload_until_manifest(local, remote):
        if remote.name == "manifest.json":
            raise ConnectionError("network gone")
        real_upload(local, remote)

    monkeypatch.setattr(object_store, "_upload", upload_until_manifest)
    with pytest.raises(ConnectionError):
        commit_one(store, run_id="cut")
    cut = bucket / "production_scores" / "2026-03-02" / "cut"
    assert (cut / "scores.parquet").exists() and not (cut / "manifest.json").exists()
    assert store.current("production_scores", "2026-03-02") == first, "the pointer still names the last good output"
    assert [p.name for p in store.list_outputs("production_scores", "2026-03-02")] == ["good"]

    monkeypatch.setattr(object_store, "_upload", real_upload)
    retried, _ = commit_one(store, run_id="cut")
    assert retried.name == "cut-2", "a half-uploaded folder is never written into again"


def test_a_pointer_to_a_folder_without_manifest_is_refused(bucket):
    store = open_output_store(str(bucket))
    partition = bucket / "production_scores" / "2026-03-02"
    (partition / "half" / "scores.parquet").write_bytes(b"partial")
    (partition / "current.json").write_text(json.dumps({"run_dir": "half"}))
    with pytest.raises(OutputStoreError, match="no manifest.json"):
        store.current("production_scores", "2026-03-02")


def test_abort_uploads_nothing(bucket):
    store = open_output_store(str(bucket))
    with store.stage("production_scores", "2026-03-02", "run1") as out:
        out.write_parquet("scores.parquet", FRAME)
        staging = out.path
    assert not staging.exists()
    assert not (bucket / "production_scores" / "2026-03-02" / "run1").exists()
    assert store.current("production_scores", "2026-03-02") is None


def test_a_model_round_trips_through_the_object_store(bucket):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    store = open_output_store(str(bucket))
    with store.stage("candidate_logreg", "2026-03-02", "run1") as out:
        sha = out.save_model("model.skops", model)
        final = out.commit({"model_sha256": sha})
    loaded = load_model(store.current("candidate_logreg", "2026-03-02") / "model.skops",
                        store.read_manifest(final)["model_sha256"])
    np.testing.assert_array_equal(loaded.predict_proba([[1.5]]), model.predict_proba([[1.5]]))


def test_the_warehouse_reads_parquet_tables_on_an_object_store(bucket, tmp_path, monkeypatch):
    from refresh_assets.core.features import DatasetContractError, open_source

    tables = {
        "players": pd.DataFrame({"player_id": [1, 2], "install_date": pd.to_datetime(["2026-01-01", "2026-01-02"])}),
        "sessions": pd.DataFrame({"player_id": [1, 1, 2], "minutes": [10.0, 20.0, 5.0]}),
        "purchases": pd.DataFrame({"player_id": [1], "amount": [4.99]}),
    }
    for name, frame in tables.items():
        with (bucket / "raw" / f"{name}.parquet").open("wb") as handle:
            frame.to_parquet(handle)
        frame.to_parquet(tmp_path / f"{name}.parquet")
    monkeypatch.setenv("REFRESH_ASSETS_WAREHOUSE", str(bucket / "raw"))
    from refresh_assets.resources import Warehouse

    assert Warehouse().location == str(bucket / "raw")  # the URL as given, not collapsed into a local path
    with Warehouse().connect() as remote, open_source(tmp_path) as local:
        for name in tables:
            query = f"SELECT * FROM {name} ORDER BY ALL"
            assert remote.execute(query).fetchall() == local.execute(query).fetchall()

    # a folder of Parquet files is one table of the folder's name, on an object store too
    for part in range(2):
        with (bucket / "raw" / "orders" / f"part-{part}.parquet").open("wb") as handle:
            pd.DataFrame({"order_id": [part], "amount": [1.5 + part]}).to_parquet(handle)
    with open_source(str(bucket / "raw")) as remote:
        assert remote.execute("SELECT sum(amount), count(*) FROM orders").fetchone() == (4.0, 2)
    for name in ("players", "sessions", "purchases", "orders/part-0", "orders/part-1"):
        (bucket / "raw" / f"{name}.parquet").unlink()
    with pytest.raises(DatasetContractError, match="(no Parquet table under|the warehouse) memory://"):
        with open_source(str(bucket / "raw")):
            pass


def test_the_registry_refuses_an_object_store_root_by_name():
    from refresh_assets.resources import Registry

    with pytest.raises(ValueError, match="registry root 's3://models/registry' is not a local folder.*file locks"):
        Registry(root="s3://models/registry").registry()


def test_an_unpublished_commit_is_uploaded_but_not_current_until_published(bucket):
    store = open_output_store(str(bucket))
    first, _ = commit_one(store, "run1", "first")
    with store.stage("production_scores", "2026-03-02", "run2") as out:
        out.write_json("summary.json", {"marker": "pending"})
        pending = out.commit({"note": "pending"}, publish=False)
    assert str(store.current("production_scores", "2026-03-02")) == str(first)
    assert store.read_manifest(pending)["note"] == "pending"
    located = store.locate(str(pending))  # as a materialization's metadata names it
    store.publish("production_scores", "2026-03-02", located)
    assert str(store.current("production_scores", "2026-03-02")) == str(pending)
    with pytest.raises(OutputStoreError, match="is not an output of production_scores 2026-03-03"):
        store.publish("production_scores", "2026-03-03", located)


def test_a_reader_refuses_an_output_file_changed_after_commit(tmp_path):
    from refresh_assets.core.object_store import OutputIntegrityError, read_output_json, read_output_parquet

    store = OutputStore(tmp_path)
    with store.stage("training_dataset", "2026-03-02", "run1") as out:
        out.write_parquet("scoring.parquet", FRAME)
        out.write_json("summary.json", {"rows": 3})
        committed = out.commit({})
    manifest = store.read_manifest(committed)
    pd.testing.assert_frame_equal(read_output_parquet(committed, "scoring.parquet", manifest), FRAME)
    assert read_output_json(committed, "summary.json", manifest) == {"rows": 3}
    (committed / "summary.json").write_text('{"rows": 4}')
    with pytest.raises(OutputIntegrityError, match="summary.json changed after it was committed"):
        read_output_json(committed, "summary.json", manifest)
    with pytest.raises(OutputIntegrityError, match="other.parquet is not listed in the manifest"):
        read_output_parquet(committed, "other.parquet", manifest)
