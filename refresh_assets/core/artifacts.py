"""The only place that writes output files: atomic writes, hashes, manifests and safe model files.

Every run must leave data consistent whatever its final status, including SIGKILL at any instant. The
rules that give this, kept here so that no other module has to get them right:

* a file is written to a hidden ``.tmp-*`` sibling, fsynced, then ``os.replace``d over the target and the
  directory fsynced -- a reader sees the old file or the new one, never half of one;
* an output folder is built in a hidden ``.staging-*`` directory, ``manifest.json`` (with the hash of
  every file) is written LAST, the directory is renamed into place, and only then is the
  ``current.json`` pointer replaced -- a folder without a manifest is never an output;
* models are saved with skops, and loading refuses a file whose hash differs from the one recorded, or
  that holds a type outside a short allow-list, so that loading never runs arbitrary code.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import pandas as pd

from refresh_assets.core.faults import fault_point

__all__ = [
    "MANIFEST_NAME",
    "POINTER_NAME",
    "REFUSED_TYPE_PREFIXES",
    "TRUSTED_TYPE_NAMES",
    "TRUSTED_TYPE_PREFIXES",
    "ModelIntegrityError",
    "OutputStore",
    "OutputStoreError",
    "StagedOutput",
    "UnsafePathError",
    "UntrustedModelError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "check_model_types",
    "clear_model_caches",
    "code_version",
    "frame_hash",
    "fsync_dir",
    "is_trusted_type",
    "library_versions",
    "load_model",
    "safe_component",
    "safe_join",
    "save_model",
    "sha256_bytes",
    "sha256_file",
]

MANIFEST_NAME = "manifest.json"
POINTER_NAME = "current.json"
TMP_PREFIX = ".tmp-"
STAGING_PREFIX = ".staging-"

# ---------------------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------------------


class UnsafePathError(ValueError):
    """A name that would escape its folder, or that the store reserves for itself."""


_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9._:-]+")
_MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux/macOS: fail with a clear message, not an OSError later


def safe_component(value: str, what: str) -> str:
    """Return ``value`` if it is one harmless path component, else raise UnsafePathError.

    Asset names, partition keys and run ids become folder names; a key like '../x' must not be able to
    write outside the store. Names starting with '.' are refused too: hidden names are reserved for
    staging folders and temp files, which readers are told to ignore.
    """
    if not isinstance(value, str):
        raise UnsafePathError(f"{what} must be a string, got {type(value).__name__}: {value!r}")
    if value in ("", ".", ".."):
        raise UnsafePathError(f"{what} {value!r} is not a usable file or folder name")
    if "\x00" in value or "/" in value or "\\" in value or os.path.isabs(value):
        raise UnsafePathError(f"{what} {value!r} must be a single path component (no '/', '\\', NUL)")
    if not _SAFE_COMPONENT.fullmatch(value):
        raise UnsafePathError(f"{what} {value!r} may only contain letters, digits and '._:-'")
    if value.startswith("."):
        raise UnsafePathError(f"{what} {value!r} must not start with '.' (hidden names are reserved)")
    if len(value.encode()) > _MAX_COMPONENT_BYTES:
        raise UnsafePathError(f"{what} {value[:40]!r}... is longer than {_MAX_COMPONENT_BYTES} bytes")
    return value


def safe_join(root: Path, *parts: str) -> Path:
    """Join checked components onto ``root`` and prove the (symlink-resolved) result is inside it."""
    root_resolved = Path(root).resolve()
    checked = [safe_component(part, f"path part {index}") for index, part in enumerate(parts)]
    joined = root_resolved.joinpath(*checked).resolve()
    if not joined.is_relative_to(root_resolved):
        # Only reachable through a symlink inside root that points elsewhere.
        raise UnsafePathError(f"{'/'.join(checked)!r} resolves to {joined}, outside {root_resolved}")
    return joined


# ---------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so that a rename or new entry inside it survives a power cut."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(str(path), flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory created so the new entries are durable."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # created concurrently: fine
        fsync_dir(directory.parent)


@lru_cache(maxsize=1)
def _file_mode() -> int:
    """Mode for new files: mkstemp makes 0600 files, but outputs should honour the umask like open() does."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # not thread-safe, hence cached and only a fallback
    os.umask(current)
    return 0o666 & ~current


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write via a hidden temp file in the target's folder, fsync, rename over the target, fsync the folder.

    The temp file lives in the same folder so that os.replace is a same-filesystem atomic rename. On any
    exception (including KeyboardInterrupt) the temp file is removed and the target keeps its old content.
    """
    target = Path(path)
    _ensure_dir(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=f"-{target.name}"[:64], dir=target.parent)
    fd_owned_by_handle = False
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            fd_owned_by_handle = True
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        if not fd_owned_by_handle:
            os.close(fd)
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRORS:
            raise OutputWriteError(exc.errno, f"cannot write {target.name} in {target.parent}: "
                                              f"{_STORAGE_ERRORS[exc.errno]}; its previous content is unchanged") from exc
        raise
    fsync_dir(target.parent)
    return target


#: errno -> what an operator should read when the disk refuses a write
_STORAGE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file size limit reached",
                   errno.EROFS: "the file system is read-only", errno.EDQUOT: "disk quota exceeded",
                   errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


class OutputWriteError(OSError):
    """The disk refused a write (full, read-only, size limit, permissions); nothing was replaced."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably (see module docstring)."""
    return _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _to_json(obj: Any) -> str:
    # default=str keeps dates, Paths and numpy scalars writable; sorted keys make files diffable.
    return json.dumps(obj, sort_keys=True, indent=2, default=str) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomic JSON write with sorted keys and indent 2; unknown types are written with str()."""
    return atomic_write_text(path, _to_json(obj))


def atomic_write_parquet(path: str | Path, frame: pd.DataFrame) -> Path:
    """Atomic parquet write with pyarrow (a RangeIndex is kept as metadata, any other index as columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame)
    return _atomic_write(path, lambda handle: pq.write_table(table, handle))


# ---------------------------------------------------------------------------------------------------------
# Hashes and provenance
# ---------------------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of in-memory bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so large parquet files do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_hash(frame: pd.DataFrame) -> str:
    """Content hash of a frame that is the same in every run for the same data.

    hash_pandas_object uses a fixed key, so row hashes are deterministic; the column names, dtypes and
    row count are hashed too, so a renamed column or a changed dtype changes the hash. Row order matters
    (the SQL orders its output). The index is ignored: it is an artefact of how the frame was built.
    """
    digest = hashlib.sha256()
    header = {
        "columns": [str(column) for column in frame.columns],
        "dtypes": [str(dtype) for dtype in frame.dtypes],
        "rows": int(len(frame)),
    }
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    if len(frame.columns) and len(frame):
        row_hashes = pd.util.hash_pandas_object(frame, index=False)
        digest.update(row_hashes.to_numpy(dtype="uint64").tobytes())
    return digest.hexdigest()


_VERSIONED_DISTRIBUTIONS = ("dagster", "scikit-learn", "pandas", "numpy", "duckdb", "evidently", "skops")


@lru_cache(maxsize=1)
def _library_versions_cached() -> tuple[tuple[str, str], ...]:
    versions: list[tuple[str, str]] = []
    for distribution in _VERSIONED_DISTRIBUTIONS:
        try:
            versions.append((distribution, importlib.metadata.version(distribution)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((distribution, "not installed"))
    versions.append(("python", platform.python_version()))
    return tuple(versions)


def library_versions() -> dict[str, str]:
    """Versions recorded in manifests, so a model can be traced to the libraries that produced it."""
    return dict(_library_versions_cached())


@lru_cache(maxsize=1)
def code_version() -> str | None:
    """Git commit of this package's checkout, or None (no git, no commit, not a checkout, timeout)."""
    package_dir = Path(__file__).resolve().parent
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=package_dir,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = completed.stdout.strip()
    if completed.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return None
    return commit


# ---------------------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------------------

# skops already trusts plain containers, numpy arrays and sklearn estimators; get_untrusted_types lists
# only what is beyond that. Measured on the project's pipelines (ColumnTransformer + OneHotEncoder /
# OrdinalEncoder + SimpleImputer + StandardScaler + HGB / RandomForest / LogisticRegression / soft
# VotingClassifier / CalibratedClassifierCV, and models.build_pipeline for every algorithm) with skops 0.16
# and scikit-learn 1.9:
#   "sklearn."  -> sklearn.tree._tree.Tree, ...hist_gradient_boosting.predictor.TreePredictor,
#                  sklearn.utils._bunch.Bunch (VotingClassifier.named_estimators_),
#                  sklearn.compose._column_transformer.make_column_selector,
#                  sklearn.calibration._CalibratedClassifier / _SigmoidCalibration,
#                  sklearn.utils.validation.check_array (HGB with categorical_features, wrapped in a partial)
#   "numpy."    -> numpy.dtype (stored dtypes of fitted encoders / imputers)
# Prefixes must end with '.' so that they match whole module paths ("numpy." does not match "numpyx").
TRUSTED_TYPE_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.")
# Single names rather than whole modules: trusting "builtins." would also trust eval/exec/open.
#   builtins.object    -> make_column_selector(dtype_include=object)
#   functools.partial  -> HistGradientBoosting with categorical_features (wraps sklearn check_array in its
#                         internal preprocessor; models.build_pipeline('hist_gb') needs it)
TRUSTED_TYPE_NAMES: frozenset[str] = frozenset({"builtins.object", "functools.partial"})
# Corners of the trusted packages that read or write files, download, or start processes: a crafted file
# could wire them into e.g. FunctionTransformer(func=...) and have them run at predict time. No model needs
# them. This is defence in depth, not a sandbox: the primary guard is the sha256 recorded at save time.
REFUSED_TYPE_PREFIXES: tuple[str, ...] = (
    "sklearn.datasets.",  # fetch_* download, load_* read files
    "sklearn.utils._testing.",  # assert_run_python_script_* starts a Python subprocess
    "numpy.load",  # load, loadtxt
    "numpy.save",  # save, savez, savez_compressed, savetxt
    "numpy.genfromtxt",
    "numpy.fromfile",
    "numpy.fromregex",
    "numpy.memmap",
    "numpy.DataSource",
    "numpy.lib.format.",
    "numpy.lib.npyio.",
    "numpy.lib._npyio_impl.",
    "numpy.lib._datasource.",
    "numpy.ctypeslib.",
    "numpy.f2py.",
    "numpy.distutils.",
    "numpy.testing.",
)


class UntrustedModelError(ValueError):
    """The model file holds types outside the allow-list; loading it could run arbitrary code."""


class ModelIntegrityError(ValueError):
    """The model file is not the one recorded (hash mismatch) or is not a readable skops file."""


def is_trusted_type(name: str) -> bool:
    """True if a skops type name is in the allow-list (module prefix or exact name) and not refused."""
    if name.startswith(REFUSED_TYPE_PREFIXES):
        return False
    return name in TRUSTED_TYPE_NAMES or name.startswith(TRUSTED_TYPE_PREFIXES)


# Within one process, the same model bytes are checked and loaded several times in a run (saved by its
# candidate step, read back by the ensemble and the comparison, promoted, loaded by the scores and the real-time
# scorer: nine skops walks of the same file in an in-process refresh). Both caches below are keyed by the
# sha256 of the bytes, which every caller computes from the bytes it holds, so a cached answer is the answer
# for exactly those bytes: the trust check's result is a function of the bytes, and a loaded model is handed
# out as a deep copy (a caller may change its copy; the cache keeps its own). save_model seeds the cache with
# a copy of the model it wrote, so even the first read-back in the process is a copy, not a skops load (the
# sha256 and the trust check still run on the file's bytes; a test checks that the copy predicts what the
# file's model predicts, for every algorithm of the zoo).
_TYPES_CACHE: dict[str, list[str]] = {}
_MODEL_CACHE: "OrderedDict[str, tuple[int, Any]]" = OrderedDict()
#: payload bytes of the skops files whose loaded models are kept (least recently used dropped first)
MODEL_CACHE_BYTES = 512 * 2**20
_CACHE_LOCK = threading.Lock()


def clear_model_caches() -> None:
    """Forget every cached trust check and loaded model (tests; a process that wants its memory back)."""
    with _CACHE_LOCK:
        _TYPES_CACHE.clear()
        _MODEL_CACHE.clear()


def check_model_types(data: bytes, sha256: str | None = None) -> list[str]:
    """Return the non-default types in a skops payload, raising UntrustedModelError if any is not trusted.

    ``sha256``: the hash of ``data`` when the caller has it already. skops walks a payload once per process
    (its types, keyed by its sha256); the allow-list is applied to them on every call.
    """
    import skops.io

    key = sha256 or sha256_bytes(data)
    with _CACHE_LOCK:
        untrusted = _TYPES_CACHE.get(key)
    if untrusted is None:
        try:
            untrusted = skops.io.get_untrusted_types(data=data)
        except Exception as error:  # zipfile.BadZipFile, KeyError, json errors ...: all mean "not our file"
            raise ModelIntegrityError(f"not a readable skops model file: {error}") from error
        with _CACHE_LOCK:
            _TYPES_CACHE[key] = list(untrusted)
    refused = sorted(name for name in untrusted if not is_trusted_type(name))
    if refused:
        raise UntrustedModelError(
            f"model file holds types outside the trusted list {list(TRUSTED_TYPE_PREFIXES)}"
            f" + {sorted(TRUSTED_TYPE_NAMES)}: {refused}"
        )
    return list(untrusted)


def save_model(model: Any, path: str | Path) -> str:
    """Save ``model`` with skops atomically and return the file's sha256.

    The trust check runs here too, so a model that could never be loaded fails in the training step
    that made it, not later in promotion or scoring.
    """
    import skops.io

    data = skops.io.dumps(model)
    sha256 = sha256_bytes(data)
    check_model_types(data, sha256)
    atomic_write_bytes(path, data)
    _remember_model(sha256, len(data), model)  # the steps that read it back in this process skip skops' load
    return sha256


def _remember_model(sha256: str, size: int, model: Any) -> None:
    """Keep a deep copy of ``model`` as the loaded model of the bytes with ``sha256`` (LRU, MODEL_CACHE_BYTES)."""
    if size > MODEL_CACHE_BYTES:
        return
    kept = copy.deepcopy(model)
    with _CACHE_LOCK:
        _MODEL_CACHE[sha256] = (size, kept)
        _MODEL_CACHE.move_to_end(sha256)
        while sum(entry_size for entry_size, _ in _MODEL_CACHE.values()) > MODEL_CACHE_BYTES:
            _MODEL_CACHE.popitem(last=False)


def load_model(path: str | Path, expected_sha256: str | None) -> Any:
    """Load a skops model, refusing a file that is not the recorded one or holds untrusted types.

    The bytes are read once and the same bytes are hashed, checked and loaded, so the file cannot be
    swapped between the check and the load.
    """
    import skops.io

    data = (path if hasattr(path, "read_bytes") else Path(path)).read_bytes()  # a Path or a UPath (object store)
    actual_sha256 = sha256_bytes(data)
    if expected_sha256 is not None and actual_sha256 != expected_sha256.lower():
        raise ModelIntegrityError(
            f"model file {path} has sha256 {actual_sha256}, expected {expected_sha256}"
        )
    trusted = check_model_types(data, actual_sha256)
    with _CACHE_LOCK:
        cached = _MODEL_CACHE.get(actual_sha256)
        if cached is not None:
            _MODEL_CACHE.move_to_end(actual_sha256)
    if cached is not None:  # these very bytes were loaded before in this process (see _TYPES_CACHE)
        return copy.deepcopy(cached[1])
    model = skops.io.loads(data, trusted=trusted)
    _remember_model(actual_sha256, len(data), model)
    return model


# ---------------------------------------------------------------------------------------------------------
# Output folders
# ---------------------------------------------------------------------------------------------------------


class OutputStoreError(RuntimeError):
    """The store is in a state a reader must not trust (e.g. a pointer to a folder without a manifest)."""


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def read_manifest_in(output_dir: Any) -> dict[str, Any]:
    """The manifest of a committed output folder (a Path, or a UPath on an object store)."""
    manifest_path = output_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise OutputStoreError(f"{output_dir} is not a committed output (no {MANIFEST_NAME})") from error
    if not isinstance(manifest, dict):
        raise OutputStoreError(f"{manifest_path} does not hold a JSON object")
    return manifest


class OutputStore:
    """Committed outputs live in ``<root>/<asset>/<partition>/<run_id>[-N]/`` with a manifest.json.

    ``current.json`` in the partition folder names the latest committed output. Hidden entries
    (``.staging-*``, ``.tmp-*``) are work in progress or debris from killed runs, never outputs.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def partition_dir(self, asset: str, partition_key: str) -> Path:
        """Folder holding every output of one asset partition (not created)."""
        return safe_join(self.root, safe_component(asset, "asset"), safe_component(partition_key, "partition_key"))

    def stage(self, asset: str, partition_key: str, run_id: str) -> StagedOutput:
        """Start a new output in a hidden staging folder; nothing is visible until commit()."""
        safe_component(run_id, "run_id")
        partition_dir = self.partition_dir(asset, partition_key)
        staging_dir = partition_dir / f"{STAGING_PREFIX}{run_id}-{secrets.token_hex(4)}"
        try:
            _ensure_dir(partition_dir)
            staging_dir.mkdir()
        except OSError as exc:
            if exc.errno not in _STORAGE_ERRORS:
                raise
            raise OutputWriteError(exc.errno, f"cannot start a new {asset} output for {partition_key} in "
                                              f"{partition_dir}: {_STORAGE_ERRORS[exc.errno]}; "
                                              f"nothing was written, the current output is unchanged") from exc
        return StagedOutput(self, asset, partition_key, run_id, staging_dir)

    def current(self, asset: str, partition_key: str) -> Path | None:
        """Folder of the latest committed output, or None if nothing was ever committed."""
        partition_dir = self.partition_dir(asset, partition_key)
        pointer_path = partition_dir / POINTER_NAME
        try:
            pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise OutputStoreError(f"cannot read pointer {pointer_path}: {error}") from error
        run_dir_name = pointer.get("run_dir") if isinstance(pointer, dict) else None
        try:
            output_dir = partition_dir / safe_component(run_dir_name, f"run_dir in {pointer_path}")
        except UnsafePathError as error:
            raise OutputStoreError(str(error)) from error
        if not (output_dir / MANIFEST_NAME).is_file():
            raise OutputStoreError(
                f"{pointer_path} points to {output_dir}, which has no {MANIFEST_NAME}: refusing to use it"
            )
        return output_dir

    def read_manifest(self, output_dir: str | Path) -> dict[str, Any]:
        """The manifest of a committed output folder."""
        return read_manifest_in(Path(output_dir))

    def locate(self, output_dir: str | Path) -> Path:
        """An output folder named as a string (e.g. in materialization metadata) as this store's path type."""
        return Path(output_dir)

    def publish(self, asset: str, partition_key: str, output_dir: str | Path) -> Path:
        """Make a committed output folder of this partition the current one (replace ``current.json``).

        ``commit(publish=False)`` leaves an output committed but not current; this is the second half, run
        when the output is accepted (the dataset, once its blocking checks pass).
        """
        partition_dir = self.partition_dir(asset, partition_key)
        output_dir = Path(output_dir)
        if output_dir.parent != partition_dir:
            raise OutputStoreError(f"{output_dir} is not an output of {asset} {partition_key}")
        manifest = self.read_manifest(output_dir)
        atomic_write_json(partition_dir / POINTER_NAME, _pointer(output_dir, manifest))
        return output_dir

    def list_outputs(self, asset: str, partition_key: str) -> list[Path]:
        """Committed output folders of one partition, oldest commit first."""
        partition_dir = self.partition_dir(asset, partition_key)
        if not partition_dir.is_dir():
            return []
        keyed: list[tuple[str, str, Path]] = []
        for entry in partition_dir.iterdir():
            manifest_path = entry / MANIFEST_NAME
            if entry.name.startswith(".") or not entry.is_dir() or not manifest_path.is_file():
                continue
            try:
                committed_at = str(self.read_manifest(entry).get("committed_at", ""))
            except (OutputStoreError, ValueError):
                committed_at = ""
            if not committed_at:  # written by hand or an older format: fall back to the manifest's mtime
                mtime = manifest_path.stat().st_mtime
                committed_at = datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="microseconds")
            keyed.append((committed_at, entry.name, entry))
        return [entry for _, _, entry in sorted(keyed)]

    def _staging_debris(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for asset_dir in self.root.iterdir():
            if not asset_dir.is_dir() or asset_dir.name.startswith("."):
                continue
            for partition_dir in asset_dir.iterdir():
                if not partition_dir.is_dir() or partition_dir.name.startswith("."):
                    continue
                for entry in partition_dir.iterdir():
                    if entry.name.startswith((STAGING_PREFIX, TMP_PREFIX)):
                        yield entry

    def clean_stale_staging(self, older_than_seconds: float = 3600) -> int:
        """Remove staging folders and temp files left by killed runs; returns how many were removed.

        Age is the newest mtime of the entry and anything inside it, so a staging folder still being
        written is kept. The cutoff must exceed the longest gap between writes in any step (stage late,
        just before writing).
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in list(self._staging_debris()):
            try:
                if _newest_mtime(entry) >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue  # committed or aborted meanwhile
            removed += 1
        return removed


def _pointer(output_dir: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What ``current.json`` holds: the folder name, and enough to notice the folder was swapped."""
    return {
        "run_dir": output_dir.name,
        "run_id": manifest.get("run_id"),
        "committed_at": manifest.get("committed_at"),
        "manifest_sha256": sha256_bytes((output_dir / MANIFEST_NAME).read_bytes()),
    }


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest


class StagedOutput:
    """An output being built in a hidden staging folder; ``commit`` publishes it, ``abort`` discards it.

    Used as a context manager it aborts on an exception, and also when the block ends without commit:
    committing is always explicit.
    """

    def __init__(self, store: OutputStore, asset: str, partition_key: str, run_id: str, path: Path) -> None:
        self.store = store
        self.asset = asset
        self.partition_key = partition_key
        self.run_id = run_id
        self.path = path
        self.committed_path: Path | None = None
        self._closed = False

    # -- writing ------------------------------------------------------------------------------------------

    def _target(self, name: str) -> Path:
        self._require_open()
        safe_component(name, "output file name")
        if name in (MANIFEST_NAME, POINTER_NAME):
            raise UnsafePathError(f"output file name {name!r} is reserved for the store")
        return safe_join(self.path, name)

    def write_parquet(self, name: str, frame: pd.DataFrame) -> Path:
        return atomic_write_parquet(self._target(name), frame)

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self._target(name), text)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self._target(name), obj)

    def save_model(self, name: str, model: Any) -> str:
        """Save a model into the output; returns its sha256."""
        return save_model(model, self._target(name))

    def add_file(self, name: str) -> Path:
        """Check a file that another library wrote into ``self.path`` (e.g. an HTML report) and return it.

        Every file in the staging folder is hashed into the manifest at commit; this call just fails
        early, at the step that should have written the file, if it is missing or misplaced.
        """
        target = self._target(name)
        if not target.is_file():
            raise FileNotFoundError(f"{name!r} was expected in the staging folder {self.path} but is not a file")
        return target

    # -- publishing ---------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            state = f"committed to {self.committed_path}" if self.committed_path else "aborted"
            raise OutputStoreError(f"staged output {self.path.name} is already {state}")

    def _file_entries(self) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            for filename in sorted(filenames):
                file_path = Path(dirpath, filename)
                relative = file_path.relative_to(self.path).as_posix()
                if filename.startswith(TMP_PREFIX):
                    raise OutputStoreError(f"temp file {relative} in {self.path}: a write is still in progress")
                if relative == MANIFEST_NAME:
                    continue
                if file_path.is_symlink():
                    raise OutputStoreError(f"{relative} in {self.path} is a symlink; outputs must hold real files")
                files[relative] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
        return files

    def commit(self, manifest: Mapping[str, Any], publish: bool = True) -> Path:
        """Publish the staged folder and point ``current.json`` at it; returns the final folder.

        Order matters for crash safety: file hashes, then manifest.json (the commit marker, LAST), then
        the rename into place, then the pointer. A kill before the rename leaves only a hidden staging
        folder; a kill after it leaves a complete output that is simply not yet current. With
        ``publish=False`` the pointer is left alone: the output is kept but readers do not see it until
        ``store.publish`` (used for a dataset that must pass its checks first).
        """
        self._require_open()
        fault_point(f"{self.asset}:staged")
        full_manifest = self._full_manifest(manifest)
        atomic_write_json(self.path / MANIFEST_NAME, full_manifest)

        partition_dir = self.path.parent
        final_dir = self._rename_into_place(partition_dir)
        fsync_dir(partition_dir)
        fault_point(f"{self.asset}:renamed")
        self.committed_path = final_dir
        self._closed = True
        if publish:
            atomic_write_json(partition_dir / POINTER_NAME, _pointer(final_dir, full_manifest))
        return final_dir

    def _full_manifest(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's manifest plus the fields the store owns (hashes of every staged file, commit time)."""
        return {
            "code_version": code_version(),
            "library_versions": library_versions(),
            **dict(manifest),
            # Fields the store owns: whatever the caller passed, these describe what is on disk.
            "asset": self.asset,
            "partition_key": self.partition_key,
            "run_id": self.run_id,
            "committed_at": _utc_now_iso(),
            "files": self._file_entries(),
        }

    def _rename_into_place(self, partition_dir: Path) -> Path:
        """Rename to <run_id>, or <run_id>-2, -3 ... when a retried step already committed that name."""
        for attempt in range(1, 10_000):
            name = self.run_id if attempt == 1 else f"{self.run_id}-{attempt}"
            candidate = partition_dir / name
            if candidate.exists() or candidate.is_symlink():
                continue
            try:
                # rename(2) would silently replace an EMPTY directory; committed ones are never empty.
                os.rename(self.path, candidate)
            except OSError as error:
                if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    continue  # lost a race with a concurrent commit of the same run id
                raise
            return candidate
        raise OutputStoreError(f"no free folder name for run {self.run_id} in {partition_dir}")

    def abort(self) -> None:
        """Discard the staged folder (no-op after commit or a previous abort)."""
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if not self._closed:
            self.abort()
