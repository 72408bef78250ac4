"""Imported last by the multiprocess executor's forkserver (``executors.FORKSERVER_PRELOAD``): reads Dagster's
migration scripts once (``alembic_scripts.py``), then freezes the preloaded heap, so each step process forked from it
starts with Dagster, pandas, scikit-learn and those scripts loaded and out of its collections' reach (``heap.py``)."""

from refresh_assets.alembic_scripts import warm
from refresh_assets.heap import freeze_startup_heap

warm()
freeze_startup_heap()
