"""Dagster resources: where raw data is read, where outputs are written, where the champion lives."""


from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from refresh_assets import settings
from refresh_assets.core import features


class Warehouse(dg.ConfigurableResource):
    """The raw warehouse the query scripts run on: a DuckDB file or a folder of Parquet files."""

    location: str = Field(default_factory=lambda: str(settings.warehouse_path()),
                          description="DuckDB file, or folder with players/sessions/purchases Parquet files.")
    query_path: str | None = Field(default=None,
                                   description="Your own query script (.sql); empty: the packaged churn_features.sql.")

    @contextmanager
    def connect(self) -> Iterator:
        with features.open_source(self.location) as con:
            yield con


class ArtifactStore(dg.ConfigurableResource):
    """Root of every output folder (dataset files, models, reports, scores), one per asset/partition/run."""

    root: str = Field(default_factory=lambda: str(settings.data_dir() / "outputs"),
                      description="Folder that holds <asset>/<partition>/<run_id>/ outputs.")

    def store(self):
        from refresh_assets.core.artifacts import OutputStore

        return OutputStore(self.root)


class Registry(dg.ConfigurableResource):
    """The model registry: champion history in DuckDB plus immutable model files."""

    root: str = Field(default_factory=lambda: str(settings.data_dir() / "registry"),
                      description="Folder of registry.duckdb and models/.")
    lock_timeout_seconds: float = Field(default=120.0, description="How long to wait for another writer.")

    def registry(self):
        from refresh_assets.core.registry import ModelRegistry

        return ModelRegistry(self.root, lock_timeout_seconds=self.lock_timeout_seconds)
