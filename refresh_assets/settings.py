"""Where the project keeps its files, from the environment, with defaults that work in a checkout."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The embedded (SQLite) instance: what `dagster dev` in the root, `make ui` and the CLI run on.
EMBEDDED_INSTANCE_YAML = PROJECT_ROOT / "dagster.yaml"
#: The production instance (PostgreSQL): what `make serve` and `refresh-assets serve` / `worker` run on.
POSTGRES_INSTANCE_YAML = PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml"


def data_dir() -> Path:
    """Root of every runtime file: REFRESH_ASSETS_DATA_DIR, else the checkout's data/ folder."""
    return Path(os.environ.get("REFRESH_ASSETS_DATA_DIR") or PROJECT_ROOT / "data").resolve()


def warehouse_path() -> Path:
    """The raw warehouse: REFRESH_ASSETS_WAREHOUSE (a DuckDB file or a folder of Parquet files)."""
    return Path(os.environ.get("REFRESH_ASSETS_WAREHOUSE") or data_dir() / "warehouse" / "raw.duckdb")


def warehouse_location() -> str:
    """REFRESH_ASSETS_WAREHOUSE as given (a URL such as s3://bucket/raw stays a URL), else the local default."""
    return os.environ.get("REFRESH_ASSETS_WAREHOUSE") or str(warehouse_path())


#: First partition (refresh date) of the code location when REFRESH_ASSETS_PARTITION_START is not set.
DEFAULT_PARTITION_START = "2025-01-01"


def query_path() -> str | None:
    """The user's query script: REFRESH_ASSETS_QUERY (a .sql file), else None (the packaged one)."""
    return os.environ.get("REFRESH_ASSETS_QUERY") or None


def partition_start() -> str:
    """REFRESH_ASSETS_PARTITION_START (YYYY-MM-DD), else 2025-01-01: the first date a refresh can run for."""
    import datetime as dt

    value = os.environ.get("REFRESH_ASSETS_PARTITION_START") or DEFAULT_PARTITION_START
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"REFRESH_ASSETS_PARTITION_START must be a date YYYY-MM-DD, got {value!r}") from None
    return value
