"""Dagster resources: where raw data is read, where outputs are written, where the champion lives."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from refresh_assets import settings
from refresh_assets.core import features


class Warehouse(dg.ConfigurableResource):
    """The raw warehouse the query scripts run on: a DuckDB file or a folder of Parquet files."""

    location: str = Field(default_factory=settings.warehouse_location,
                          description="DuckDB file, or folder (or object-store URL) of Parquet files: every "
                                      "<name>.parquet and every folder of Parquet files is a table <name> "
                                      "(REFRESH_ASSETS_WAREHOUSE, --warehouse).")
    query_path: str | None = Field(default_factory=settings.query_path,
                                   description="Your own query script (.sql), an absolute path on the machine that "
                                               "runs the steps (REFRESH_ASSETS_QUERY, --query); empty: the packaged "
                                               "churn_features.sql.")

    date_columns: str = Field(
        default_factory=lambda: os.environ.get("REFRESH_ASSETS_DATE_COLUMNS", ""),
        description="Snapshot cache: the column that dates each table's rows, for tables without exactly one DATE "
                    "or TIMESTAMP column, as 'orders=order_date,customers=signup_date' (REFRESH_ASSETS_DATE_COLUMNS). "
                    "An undated table is part of every snapshot's fingerprint: any change in it recomputes every "
                    "snapshot.")

    @contextmanager
    def connect(self) -> Iterator:
        with features.open_source(self.location) as con:
            yield con


class ArtifactStore(dg.ConfigurableResource):
    """Root of every output folder (dataset files, models, reports, scores), one per asset/partition/run.

    A local folder by default; an object-store URL (s3://bucket/prefix, gs://...) lets step workers on other
    machines share the outputs (core/object_store.py: files, then manifest, then current.json).
    """

    root: str = Field(default_factory=lambda: os.environ.get("REFRESH_ASSETS_OUTPUTS") or str(settings.data_dir() / "outputs"),
                      description="Folder or object-store URL that holds <asset>/<partition>/<run_id>/ outputs "
                                  "(REFRESH_ASSETS_OUTPUTS).")

    def store(self):
        from refresh_assets.core.object_store import open_output_store

        return open_output_store(self.root)


class Registry(dg.ConfigurableResource):
    """The model registry: champion history in DuckDB plus immutable model files."""

    root: str = Field(default_factory=lambda: str(settings.data_dir() / "registry"),
                      description="Folder of registry.duckdb and models/.")
    lock_timeout_seconds: float = Field(default=120.0, description="How long to wait for another writer.")

    def registry(self):
        from refresh_assets.core.object_store import is_local
        from refresh_assets.core.registry import ModelRegistry

        if not is_local(self.root):
            raise ValueError(
                f"registry root {self.root!r} is not a local folder: the champion history is a DuckDB file that "
                "needs a POSIX filesystem with file locks. On several machines, mount one shared volume "
                "(e.g. a ReadWriteMany PersistentVolumeClaim) at the same path for every step (docs/DEPLOY.md).")
        return ModelRegistry(self.root, lock_timeout_seconds=self.lock_timeout_seconds)
