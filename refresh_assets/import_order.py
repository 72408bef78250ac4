"""Import skops (and with it scikit-learn and SciPy) before Dagster in a process that will save or load models.

Why: skops 0.16 builds its list of trusted SciPy ufuncs when it is imported, by looking each of ~230 ufuncs up in
every module of ``sys.modules``, in import order, until it finds one holding it (``skops.io._utils.whichmodule``:
a ufunc has no ``__module__``). Imported after Dagster, the scan first walks Dagster's ~1,600 modules for every
ufunc: in a 600-player in-process refresh ``skops.io._trusted_types`` took 1.10 s against 0.29 s in the plain
script (``python -X importtime``, Intel Xeon, 2026-12-06). Imported before Dagster, it stops after NumPy's and
SciPy's modules. Same modules, same trusted type names (``test_import_order.py``); only the order changes.

A command that refreshes or scores in its own process calls :func:`model_io_before_dagster` first (it imports
skops in its first step anyway), and the multiprocess executor's forkserver preloads ``skops.io`` first
(``executors.FORKSERVER_PRELOAD``). Loading the code location (``dagster dev``) stays as light as before.
"""

from __future__ import annotations

import sys

#: What a process that saves or loads models imports before Dagster
MODEL_IO_MODULE = "skops.io"


def model_io_before_dagster() -> bool:
    """Import skops.io now if Dagster is not imported yet; True if it did. Afterwards it would only cost the slow
    scan this module avoids (the first model save or load imports it as before)."""
    if "dagster" in sys.modules or MODEL_IO_MODULE in sys.modules:
        return False
    __import__(MODEL_IO_MODULE)
    return True
