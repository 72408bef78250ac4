"""The audit record every output carries: who made it, from what, with which config, code and log lines.

One ``StepAudit`` per asset step: it forwards log lines to Dagster and keeps them for the manifest, times
the phases, records the upstream outputs read (with their hashes), and commits the staged output folder.
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class StepAudit:
    def __init__(self, context: dg.AssetExecutionContext, asset: str, config: dg.Config | None = None):
        self.context = context
        self.asset = asset
        self.config = config.model_dump(mode="json", warnings=False) if config is not None else {}
        self.started_at = _now()
        self._t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.inputs: dict[str, dict] = {}
        self.lines: list[dict] = []

    @property
    def partition_key(self) -> str:
        return self.context.partition_key

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    def log(self, message: str, level: str = "info") -> None:
        getattr(self.context.log, level)(message)
        self.lines.append({"at": _now(), "level": level, "message": message})

    @contextmanager
    def timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = round(time.perf_counter() - start, 3)

    def record_input(self, name: str, output_dir, manifest: dict) -> None:
        from refresh_assets.core.artifacts import sha256_bytes

        self.inputs[name] = {
            "output_dir": str(output_dir),
            "run_id": manifest.get("run_id"),
            "manifest_sha256": sha256_bytes((_as_path(output_dir) / "manifest.json").read_bytes()),
            "files": {k: v.get("sha256") for k, v in (manifest.get("files") or {}).items()},
        }

    def manifest(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        from refresh_assets.core.artifacts import code_version, library_versions

        self.timings["total"] = round(time.perf_counter() - self._t0, 3)
        return {
            "asset": self.asset,
            "partition": self.partition_key,
            "run_id": self.run_id,
            "job": self.context.run.job_name,
            "run_tags": dict(self.context.run.tags),
            "config": self.config,
            "inputs": self.inputs,
            "library_versions": library_versions(),
            "code_version": code_version(),
            "started_at": self.started_at,
            "finished_at": _now(),
            "timings_seconds": self.timings,
            "log": self.lines,
            **(extra or {}),
        }

    def commit(self, staged, extra: dict[str, Any] | None = None, publish: bool = True) -> Path:
        """Write manifest.json last and move the folder into place; only then is the output visible
        (``publish=False``: kept, but not made current until ``store.publish``)."""
        final = staged.commit(self.manifest(extra), publish=publish)
        self.context.log.info(f"{self.asset} output committed at {final}" + ("" if publish else " (not yet current)"))
        return final


def _as_path(output_dir):
    """Output folders are a Path (local store) or a UPath (object store); a str is a local folder."""
    return Path(output_dir) if isinstance(output_dir, str) else output_dir


def output_metadata(output_dir) -> dict[str, dg.MetadataValue]:
    return {
        "output_dir": dg.MetadataValue.path(str(output_dir)),
        "manifest": dg.MetadataValue.path(str(_as_path(output_dir) / "manifest.json")),
    }


class MissingInputError(RuntimeError):
    """An upstream output this step needs was never committed for this partition."""


def read_input(audit: StepAudit, store, asset: str, partition_key: str | None = None) -> tuple[Path, dict]:
    """The latest committed output of ``asset`` for the partition (a Path, or a UPath on an object store),
    recorded in the audit as an input."""
    key = partition_key or audit.partition_key
    output_dir = store.current(asset, key)
    if output_dir is None:
        raise MissingInputError(f"no committed output of {asset} for partition {key}: materialize it first")
    manifest = store.read_manifest(output_dir)
    audit.record_input(asset, output_dir, manifest)
    return _as_path(output_dir), manifest
