"""The registry's journal: one append-only, checksummed JSON record per champion change, beside the model files.

``<registry>/journal/00000005-promote-v4.json`` holds everything needed to recreate, exactly, the rows that one
change wrote to ``registry.duckdb``: the ``champion_events`` row and, for a promote, the ``model_versions`` row
(``metrics_json`` verbatim, timestamps as ISO 8601 UTC with microseconds). Its ``sha256`` is the hash of the
canonical JSON of the rest of the record, and ``prev_sha256`` is the previous record's ``sha256`` (a hash chain):
an edited record fails its checksum, a deleted one leaves a gap and breaks the chain. A record's content is a
pure function of the rows and the chain, so a record written later from the DuckDB rows (a backfill) is
byte-identical to the one a live write produced.

One small file per event rather than one JSONL file: each file is written whole (temp file, fsync, rename,
directory fsync) and never opened for writing again, so a crash can never leave half a line that every later
reader has to step over, and a damaged record damages one event, not the parsing of all those after it.

Write order (registry.py): the model file, then the record as ``<name>.json.pending``, then the DuckDB
transaction, then the rename of the pending record to ``<name>.json`` (a hard link then an unlink, so an
existing record is never overwritten). A ``.pending`` record is a change not known to have committed: the next
registry write (or ``rebuild``) confirms it when registry.duckdb holds its rows, and otherwise sets it aside in
``journal/interrupted/`` -- a change whose transaction never committed did not happen (its run failed, and a
re-run promotes again). This module knows files and hashes only; registry.py knows DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refresh_assets.core import artifacts

__all__ = [
    "FORMAT",
    "Journal",
    "JournalRecord",
    "JournalRecordError",
    "JournalScan",
    "make_record",
    "parse_timestamp",
    "timestamp_text",
]

FORMAT = "refresh-assets/registry-journal/1"
FINAL_SUFFIX = ".json"
PENDING_SUFFIX = ".json.pending"
INTERRUPTED_DIR = "interrupted"
_NAME = re.compile(r"^(\d{8})-(promote|rollback)-v(\d+)\.json(\.pending)?$")
EVENT_FIELDS = ("event_id", "version", "action", "partition_key", "run_id", "at", "reason")
VERSION_FIELDS = ("version", "partition_key", "algorithm", "metrics_json", "dataset_hash", "model_file",
                  "model_sha256", "run_id", "created_at", "reason")


class JournalRecordError(ValueError):
    """A journal file that cannot be trusted: unreadable, not a record, wrong checksum or wrong name."""


def timestamp_text(value: datetime) -> str:
    """UTC, always with microseconds: '2026-03-02T10:11:12.000123+00:00' (a naive value is taken as UTC)."""
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


def parse_timestamp(text: str) -> datetime:
    """The inverse of timestamp_text: an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return value.astimezone(timezone.utc)


def canonical_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def body_sha256(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class JournalRecord:
    """One change: its event row, the version row a promote created (None for a rollback), the chain link."""

    event: dict[str, Any]
    model_version: dict[str, Any] | None
    prev_sha256: str | None
    sha256: str
    path: Path | None = field(default=None, compare=False)

    @property
    def event_id(self) -> int:
        return int(self.event["event_id"])

    @property
    def action(self) -> str:
        return str(self.event["action"])

    @property
    def version(self) -> int:
        return int(self.event["version"])

    @property
    def pending(self) -> bool:
        return self.path is not None and self.path.name.endswith(PENDING_SUFFIX)

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "event": self.event, "model_version": self.model_version,
                "prev_sha256": self.prev_sha256}

    def file_name(self, pending: bool = False) -> str:
        return f"{self.event_id:08d}-{self.action}-v{self.version}" + (PENDING_SUFFIX if pending else FINAL_SUFFIX)

    def label(self) -> str:
        return f"event {self.event_id} ({self.action} v{self.version})"

    def same_rows(self, other: JournalRecord) -> bool:
        """Same event and version rows (the chain link aside)."""
        return self.event == other.event and self.model_version == other.model_version

    def to_bytes(self) -> bytes:
        return (json.dumps({**self.body(), "sha256": self.sha256}, sort_keys=True, indent=2, ensure_ascii=False,
                           allow_nan=False) + "\n").encode()


def make_record(event: dict[str, Any], model_version: dict[str, Any] | None, prev_sha256: str | None) -> JournalRecord:
    """A record of one change; ``event`` / ``model_version`` hold the row fields (timestamps as timestamp_text)."""
    event = {name: event[name] for name in EVENT_FIELDS}
    model_version = None if model_version is None else {name: model_version[name] for name in VERSION_FIELDS}
    body = {"format": FORMAT, "event": event, "model_version": model_version, "prev_sha256": prev_sha256}
    return JournalRecord(event, model_version, prev_sha256, body_sha256(body))


def _check_fields(body: dict[str, Any]) -> None:
    if body.get("format") != FORMAT:
        raise JournalRecordError(f"format {body.get('format')!r}, expected {FORMAT!r}")
    event = body.get("event")
    if not isinstance(event, dict) or set(event) != set(EVENT_FIELDS):
        raise JournalRecordError("its event does not have the fields " + ", ".join(EVENT_FIELDS))
    model_version = body.get("model_version")
    if model_version is not None and (not isinstance(model_version, dict) or set(model_version) != set(VERSION_FIELDS)):
        raise JournalRecordError("its model_version does not have the fields " + ", ".join(VERSION_FIELDS))
    if event["action"] not in ("promote", "rollback") or (model_version is None) != (event["action"] == "rollback"):
        raise JournalRecordError("a promote records its version row, a rollback does not")
    if model_version is not None and model_version["version"] != event["version"]:
        raise JournalRecordError("its version row is not the version of its event")
    try:
        parse_timestamp(event["at"])
        if model_version is not None:
            parse_timestamp(model_version["created_at"])
    except (TypeError, ValueError) as error:
        raise JournalRecordError(f"a timestamp is not ISO 8601 UTC: {error}") from None


@dataclass
class JournalScan:
    """Every record of a journal, checked: checksums, names, the chain and the versions each event names.

    ``valid`` is the longest run of events 1..k whose records are all present, intact and chained; everything
    the journal holds after the first problem is listed in ``beyond``.
    """

    valid: list[JournalRecord]
    readable: dict[int, JournalRecord]  # every intact final record with a unique event id (valid or not)
    beyond: list[str]              # file names of final records after the first problem (a forced rebuild drops them)
    pending: list[JournalRecord]   # readable .pending records
    problems: list[str]
    bad_pending: list[Path]        # .pending files that are not even a record

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def count(self) -> int:
        return len(self.valid) + len(self.beyond)


class Journal:
    """The folder of records; every file is written once and never rewritten."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    # -- listing (cheap: names only)

    def _names(self) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self.dir) if not name.startswith("."))
        except FileNotFoundError:
            return []

    def final_paths(self) -> list[Path]:
        return [self.dir / name for name in self._names() if name.endswith(FINAL_SUFFIX)]

    def pending_paths(self) -> list[Path]:
        return [self.dir / name for name in self._names() if name.endswith(PENDING_SUFFIX)]

    def count(self) -> int:
        """Number of final (committed) records."""
        return len(self.final_paths())

    def is_empty(self) -> bool:
        return not any(name.endswith((FINAL_SUFFIX, PENDING_SUFFIX)) for name in self._names())

    @staticmethod
    def event_id_of(path: Path) -> int | None:
        match = _NAME.match(path.name)
        return int(match.group(1)) if match else None

    def final_event_ids(self) -> list[int]:
        return sorted(i for i in (self.event_id_of(p) for p in self.final_paths()) if i is not None)

    # -- reading

    def read(self, path: str | Path) -> JournalRecord:
        """One record, checked: JSON, fields, checksum, and a file name that matches its content."""
        path = Path(path)
        try:
            data = json.loads(path.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise JournalRecordError(f"{path.name}: not readable JSON ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
            raise JournalRecordError(f"{path.name}: not a journal record (no sha256)")
        stated = data.pop("sha256")
        try:
            _check_fields(data)
        except JournalRecordError as error:
            raise JournalRecordError(f"{path.name}: {error}") from None
        actual = body_sha256(data)
        if actual != stated:
            raise JournalRecordError(f"{path.name}: checksum mismatch (its content hashes to {actual[:12]}..., "
                                     f"the record says {stated[:12]}...): it was changed after it was written")
        record = JournalRecord(data["event"], data["model_version"], data["prev_sha256"], stated, path)
        if path.name not in (record.file_name(), record.file_name(pending=True)):
            raise JournalRecordError(f"{path.name}: its content is {record.label()}, "
                                     f"which belongs in {record.file_name()}")
        return record

    def last_final(self) -> JournalRecord | None:
        """The highest-numbered final record, if intact (None if there is none or it is damaged)."""
        paths = self.final_paths()
        if not paths:
            return None
        try:
            return self.read(paths[-1])
        except JournalRecordError:
            return None

    def scan(self) -> JournalScan:
        by_id: dict[int, list[JournalRecord]] = {}
        problems: list[str] = []
        damaged_ids: set[int] = set()
        for path in self.final_paths():
            try:
                record = self.read(path)
            except JournalRecordError as error:
                problems.append(f"journal record {error}")
                event_id = self.event_id_of(path)
                damaged_ids.add(event_id if event_id is not None else 0)
                continue
            by_id.setdefault(record.event_id, []).append(record)
        last_id = max([*by_id, *damaged_ids, 0])
        valid: list[JournalRecord] = []
        defined: set[int] = set()
        broken_at: int | None = None
        unknown = object()
        prev_sha256: object = None  # the sha256 of event (id - 1)'s record; unknown when it is missing or damaged
        for event_id in range(1, last_id + 1):
            records = by_id.get(event_id, [])
            problem = None
            if event_id in damaged_ids:
                problem = ""  # already reported
            elif not records:
                problem = f"journal: event {event_id} has no record (deleted?)"
            elif len(records) > 1:
                problem = f"journal: event {event_id} has {len(records)} records"
            else:
                record = records[0]
                assert record.path is not None
                if prev_sha256 is not unknown and record.prev_sha256 != prev_sha256:
                    problem = (f"journal: the chain is broken at {record.path.name}: its prev_sha256 is not the "
                               f"sha256 of event {event_id - 1}'s record (that record was changed or replaced)")
                elif record.model_version is not None and record.version in defined:
                    problem = f"journal: {record.path.name} registers v{record.version} a second time"
                elif record.model_version is None and record.version not in defined:
                    problem = f"journal: {record.path.name} rolls back to v{record.version}, which no record registers"
            if len(records) == 1 and event_id not in damaged_ids:
                if records[0].model_version is not None:
                    defined.add(records[0].version)
                prev_sha256 = records[0].sha256
            else:
                prev_sha256 = unknown
            if problem is not None:
                if problem:
                    problems.append(problem)
                if broken_at is None:
                    broken_at = event_id
            elif broken_at is None:
                valid.append(records[0])
        if 0 in damaged_ids and broken_at is None:
            broken_at = len(valid) + 1  # a damaged file whose name gives no event id
        kept = {record.path for record in valid}
        beyond = [] if broken_at is None else [p.name for p in self.final_paths() if p not in kept]
        pending: list[JournalRecord] = []
        bad_pending: list[Path] = []
        for path in self.pending_paths():
            try:
                pending.append(self.read(path))
            except JournalRecordError:
                bad_pending.append(path)
        readable = {event_id: records[0] for event_id, records in by_id.items() if len(records) == 1}
        return JournalScan(valid, readable, beyond, pending, problems, bad_pending)

    # -- writing (each file once; never overwritten)

    def write_pending(self, record: JournalRecord) -> Path:
        """Write ``record`` as ``<name>.json.pending``, durably (temp file, fsync, rename, directory fsync)."""
        path = self.dir / record.file_name(pending=True)
        if (self.dir / record.file_name()).exists():
            raise FileExistsError(f"journal record {record.file_name()} already exists")
        artifacts.atomic_write_bytes(path, record.to_bytes())
        return path

    def confirm(self, pending_path: Path) -> Path:
        """``<name>.json.pending`` -> ``<name>.json`` (link + unlink: an existing record is never overwritten)."""
        final = pending_path.with_name(pending_path.name[: -len(".pending")])
        try:
            os.link(pending_path, final)
        except FileExistsError:
            if final.read_bytes() != pending_path.read_bytes():
                raise
        pending_path.unlink()
        artifacts.fsync_dir(self.dir)
        return final

    def write_final(self, record: JournalRecord) -> Path:
        """A record known to be committed (a backfill from the DuckDB rows): pending, then confirmed."""
        return self.confirm(self.write_pending(record))

    def set_aside(self, paths: Iterable[Path], folder: str) -> list[Path]:
        """Move records out of the journal into ``journal/<folder>/`` (kept, never deleted)."""
        moved = []
        target_dir = self.dir / folder
        for path in paths:
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / path.name
            suffix = 1
            while target.exists():
                target = target_dir / f"{path.name}.{suffix}"
                suffix += 1
            os.rename(path, target)
            moved.append(target)
        if moved:
            artifacts.fsync_dir(target_dir)
            artifacts.fsync_dir(self.dir)
        return moved
