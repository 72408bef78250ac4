"""The thin Dagster layer: one module per refresh step, each calling the plain-Python core."""
