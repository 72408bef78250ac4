"""Outputs on storage that workers on other machines reach: the same layout, manifests and current.json as
``OutputStore``, on any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...`` in tests).

A local folder (a plain path or ``file://``) keeps ``artifacts.OutputStore`` unchanged: atomic ``os.replace``
writes, fsync, a staging directory renamed into place. An object store has no rename and no fsync, but
writing one key is all-or-nothing (a reader sees the old object or the new one). So a commit is ordered:

1. the output is built in a local staging folder (the ``StagedOutput`` writers, atomic as before) and every
   file is hashed into the manifest;
2. the files are uploaded under ``<asset>/<partition>/<run_dir>/``, then ``manifest.json`` LAST: a run
   folder without a manifest is an interrupted upload, never an output (readers already refuse it);
3. only then is ``current.json`` written (one PUT): readers follow the pointer, so they see the previous
   output or the new complete one.

Interrupted uploads leave manifest-less folders behind; an object-store lifecycle rule (or a sweep of run
folders without ``manifest.json``) removes them. The registry (DuckDB) is not stored this way: see
``resources.Registry``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from refresh_assets.core.artifacts import (
    read_manifest_in,
    MANIFEST_NAME,
    POINTER_NAME,
    STAGING_PREFIX,
    OutputStore,
    OutputStoreError,
    StagedOutput,
    _pointer,
    atomic_write_json,
    safe_component,
)

LOCAL_PROTOCOLS = ("", "file", "local")


def as_upath(location: Any):
    """A UPath for a folder or URL (local paths become a pathlib-compatible local UPath)."""
    from upath import UPath

    return location if isinstance(location, UPath) else UPath(location)


def is_local(location: Any) -> bool:
    """True for a local folder (plain path or file://), False for an object store or other remote URL."""
    return as_upath(location).protocol in LOCAL_PROTOCOLS


def open_output_store(root: Any) -> OutputStore:
    """The store for ``root``: the local OutputStore for a folder, ObjectOutputStore for a URL."""
    if is_local(root):
        upath = as_upath(root)
        return OutputStore(upath.path if upath.protocol else root)
    return ObjectOutputStore(as_upath(root))


def read_parquet(path: Any) -> pd.DataFrame:
    """Read a Parquet output file from a local Path or a UPath (pandas cannot take a UPath object itself)."""
    if isinstance(path, (str, os.PathLike)):  # local paths (remote UPaths are not os.PathLike)
        return pd.read_parquet(path)
    with path.open("rb") as handle:
        return pd.read_parquet(handle)


class OutputIntegrityError(OutputStoreError):
    """A committed output file no longer matches the sha256 its manifest recorded: changed after commit."""


def read_output_bytes(output_dir: Any, name: str, manifest: dict[str, Any]) -> bytes:
    """A committed output's file, after checking it against the sha256 its manifest recorded at commit.

    Every reader of another step's output goes through here: a file edited, truncated or swapped after its
    commit (by hand, a bad disk, a tool) is refused by name instead of silently feeding a model or a score.
    """
    from refresh_assets.core.artifacts import sha256_bytes

    expected = ((manifest.get("files") or {}).get(name) or {}).get("sha256")
    if expected is None:
        raise OutputIntegrityError(f"{name} is not listed in the manifest of {output_dir}: refusing to read it")
    data = (output_dir / name).read_bytes()
    actual = sha256_bytes(data)
    if actual != expected:
        raise OutputIntegrityError(
            f"{output_dir / name} changed after it was committed (sha256 {actual[:16]}..., manifest says "
            f"{expected[:16]}...): refusing to read it; re-materialize this output")
    return data


def read_output_parquet(output_dir: Any, name: str, manifest: dict[str, Any]) -> pd.DataFrame:
    """``read_output_bytes`` parsed as Parquet (one read of the file: hashed, then decoded from memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(read_output_bytes(output_dir, name, manifest))).to_pandas()


def open_output_parquet(output_dir: Any, name: str, manifest: dict[str, Any]):
    """A committed Parquet output as a ``pyarrow.parquet.ParquetFile``, after the check of
    ``read_output_bytes`` (one read of the file; the bytes stay in memory, a small share of the decoded frame),
    for a reader that decodes only some of it (``parquet_rows``, a column of it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.ParquetFile(pa.BufferReader(read_output_bytes(output_dir, name, manifest)))


def parquet_rows(parquet, rows: Any) -> pd.DataFrame:
    """The rows at positions ``rows`` (sorted, unique) of a ParquetFile as a frame indexed 0..len(rows)-1: the
    same values and dtypes as ``read_output_parquet(...).iloc[rows]``.

    Why: a step that uses a subsample of a large frame (a candidate's ``max_training_rows`` out of millions of
    training rows) must not hold the whole frame as pandas objects. One row group is decoded at a time and only
    its wanted rows are kept, so memory follows the subsample, not the file.
    """
    import numpy as np
    import pyarrow as pa

    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows[0] < 0 or (np.diff(rows) <= 0).any()):
        raise ValueError("rows must be sorted, unique, non-negative positions")
    total = parquet.metadata.num_rows
    if rows.size and rows[-1] >= total:
        raise ValueError(f"row {int(rows[-1])} is beyond the {total} rows of the file")
    parts, start = [], 0
    for group in range(parquet.metadata.num_row_groups):
        stop = start + parquet.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            parts.append(parquet.read_row_group(group).take(pa.array(rows[lo:hi] - start)))
        start = stop
    table = pa.concat_tables(parts) if parts else parquet.schema_arrow.empty_table()
    return table.to_pandas().reset_index(drop=True)


def read_output_json(output_dir: Any, name: str, manifest: dict[str, Any]) -> Any:
    return json.loads(read_output_bytes(output_dir, name, manifest).decode("utf-8"))


class ObjectOutputStore(OutputStore):
    """``<root>/<asset>/<partition>/<run_id>[-N]/`` with manifest.json, and current.json, on an fsspec URL."""

    def __init__(self, root: Any, staging_dir: str | Path | None = None) -> None:
        self.root = as_upath(root)
        if is_local(self.root):
            raise ValueError(f"{self.root} is a local folder: use OutputStore (open_output_store picks it)")
        self.staging_dir = Path(staging_dir or tempfile.gettempdir())

    def partition_dir(self, asset: str, partition_key: str):
        return self.root / safe_component(asset, "asset") / safe_component(partition_key, "partition_key")

    def stage(self, asset: str, partition_key: str, run_id: str) -> UploadingStagedOutput:
        """Build the output in a local staging folder; nothing is uploaded until commit()."""
        safe_component(run_id, "run_id")
        remote_partition_dir = self.partition_dir(asset, partition_key)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        local = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{run_id}-", dir=self.staging_dir))
        return UploadingStagedOutput(self, asset, partition_key, run_id, local, remote_partition_dir)

    def read_manifest(self, output_dir: Any) -> dict[str, Any]:
        return read_manifest_in(as_upath(output_dir))

    def locate(self, output_dir: Any):
        return as_upath(output_dir)

    def publish(self, asset: str, partition_key: str, output_dir: Any):
        """Replace current.json with a pointer to a committed folder of this partition (see OutputStore)."""
        partition_dir = self.partition_dir(asset, partition_key)
        output_dir = as_upath(output_dir)
        if str(output_dir.parent).rstrip("/") != str(partition_dir).rstrip("/"):
            raise OutputStoreError(f"{output_dir} is not an output of {asset} {partition_key}")
        pointer = _pointer(output_dir, self.read_manifest(output_dir))
        (partition_dir / POINTER_NAME).write_text(json.dumps(pointer, sort_keys=True, indent=2) + "\n",
                                                  encoding="utf-8")
        return output_dir

    def list_outputs(self, asset: str, partition_key: str) -> list:
        """Committed output folders of one partition, oldest commit first (by the manifest's committed_at)."""
        partition_dir = self.partition_dir(asset, partition_key)
        if not partition_dir.is_dir():
            return []
        keyed = []
        for entry in partition_dir.iterdir():
            if entry.name.startswith(".") or not (entry / MANIFEST_NAME).is_file():
                continue
            keyed.append((str(self.read_manifest(entry).get("committed_at", "")), entry.name, entry))
        return [entry for _, _, entry in sorted(keyed)]

    def clean_stale_staging(self, older_than_seconds: float = 3600) -> int:
        """Nothing is staged on the object store itself (staging is local and removed at commit/abort)."""
        return 0


class UploadingStagedOutput(StagedOutput):
    """A local staging folder whose commit uploads files, then the manifest, then the pointer."""

    def __init__(self, store: ObjectOutputStore, asset: str, partition_key: str, run_id: str, path: Path,
                 remote_partition_dir: Any) -> None:
        super().__init__(store, asset, partition_key, run_id, path)
        self.remote_partition_dir = remote_partition_dir

    def commit(self, manifest: dict[str, Any], publish: bool = True):
        """Upload every file, then manifest.json, then (``publish``) replace current.json; returns the remote
        folder."""
        self._require_open()
        full_manifest = self._full_manifest(manifest)
        atomic_write_json(self.path / MANIFEST_NAME, full_manifest)
        final_dir = self._free_remote_dir()
        for relative in sorted(full_manifest["files"]):
            _upload(self.path / relative, final_dir / relative)
        _upload(self.path / MANIFEST_NAME, final_dir / MANIFEST_NAME)  # the commit marker, after every file
        if publish:
            self.store.publish(self.asset, self.partition_key, final_dir)
        self.committed_path = final_dir
        self._closed = True
        shutil.rmtree(self.path, ignore_errors=True)
        return final_dir

    def _free_remote_dir(self):
        """<run_id>, or <run_id>-2, -3 ... when a retried step already used that name (even half-uploaded)."""
        for attempt in range(1, 10_000):
            candidate = self.remote_partition_dir / (self.run_id if attempt == 1 else f"{self.run_id}-{attempt}")
            if not candidate.exists():
                return candidate
        raise OutputStoreError(f"no free folder name for run {self.run_id} in {self.remote_partition_dir}")


def _upload(local: Path, remote: Any) -> None:
    with open(local, "rb") as source, remote.open("wb") as target:
        shutil.copyfileobj(source, target, length=1 << 20)
