"""The packaged SQL query scripts (read with importlib.resources)."""
