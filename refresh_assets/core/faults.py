"""Named crash points for the fault-injection tests.

``fault_point("champion_model:renamed")`` kills the process with SIGKILL when the environment variable
REFRESH_ASSETS_FAULT_POINT names that point: the harshest crash (no ``finally``, no ``atexit``) at an exact,
repeatable place, so a test can prove what a crash there leaves behind without racing a timer. Unset (as in
production) it is one dictionary lookup. Points: ``<asset>:staged`` (files written, no manifest yet),
``<asset>:renamed`` (output folder in place, ``current.json`` not yet moved), ``registry:before_commit``
(model file copied, its journal record ``.pending``, the promotion's transaction not committed).
"""

import os
import signal

FAULT_POINT_ENV = "REFRESH_ASSETS_FAULT_POINT"


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_POINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
