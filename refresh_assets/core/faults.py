"""Named fault points for the fault-injection tests.

``fault_point("champion_model:renamed")`` kills the process with SIGKILL when the environment variable
REFRESH_ASSETS_FAULT_POINT names that point: the harshest crash (no ``finally``, no ``atexit``) at an exact,
repeatable place, so a test can prove what a crash there leaves behind without racing a timer. Unset (as in
production) it is one dictionary lookup. Points: ``<asset>:staged`` (files written, no manifest yet),
``<asset>:renamed`` (output folder in place, ``current.json`` not yet moved), ``registry:before_commit``
(model file copied, its journal record ``.pending``, the promotion's transaction not committed).

With REFRESH_ASSETS_FAULT_ACTION=pause the point holds the step instead: it writes ``<point>.reached`` into
REFRESH_ASSETS_FAULT_DIR and waits until a ``<point>.release`` file appears there (at most
``PAUSE_LIMIT_SECONDS``), so a test can break something around a run (restart its database) at a known moment
of the step rather than whenever a timer fires.
"""

import os
import signal
import tempfile
import time
from pathlib import Path

FAULT_POINT_ENV = "REFRESH_ASSETS_FAULT_POINT"
FAULT_ACTION_ENV = "REFRESH_ASSETS_FAULT_ACTION"
FAULT_DIR_ENV = "REFRESH_ASSETS_FAULT_DIR"
PAUSE_LIMIT_SECONDS = 600.0


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_POINT_ENV) != name:
        return
    if os.environ.get(FAULT_ACTION_ENV, "kill") == "pause":
        pause(name, Path(os.environ.get(FAULT_DIR_ENV) or tempfile.gettempdir()))
        return
    os.kill(os.getpid(), signal.SIGKILL)


def pause(name: str, folder: Path, limit_seconds: float = PAUSE_LIMIT_SECONDS, poll_seconds: float = 0.1) -> bool:
    """Say the point is reached, then wait for its release file; False when the limit ran out first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.reached").write_text(str(os.getpid()))
    release = folder / f"{name}.release"
    deadline = time.monotonic() + limit_seconds
    while not release.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_seconds)
    return True
