"""Imported last by the multiprocess executor's forkserver (``executors.FORKSERVER_PRELOAD``): freezes the preloaded
heap, so each step process forked from it starts with Dagster, pandas and scikit-learn out of its collections'
reach (``heap.py``)."""

from refresh_assets.heap import freeze_startup_heap

freeze_startup_heap()
