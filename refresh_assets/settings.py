"""Where the project keeps its files, from the environment, with defaults that work in a checkout."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Root of every runtime file: REFRESH_ASSETS_DATA_DIR, else the checkout's data/ folder."""
    return Path(os.environ.get("REFRESH_ASSETS_DATA_DIR") or PROJECT_ROOT / "data").resolve()


def warehouse_path() -> Path:
    """The raw warehouse: REFRESH_ASSETS_WAREHOUSE (a DuckDB file or a folder of Parquet files)."""
    return Path(os.environ.get("REFRESH_ASSETS_WAREHOUSE") or data_dir() / "warehouse" / "raw.duckdb")


def warehouse_location() -> str:
    """REFRESH_ASSETS_WAREHOUSE as given (a URL such as s3://bucket/raw stays a URL), else the local default."""
    return os.environ.get("REFRESH_ASSETS_WAREHOUSE") or str(warehouse_path())
