"""The one partitions definition: a partition key is the as-of date D of a refresh."""

import datetime as dt

import dagster as dg

from refresh_assets import settings

#: First refresh date the code location offers; move it for your own history with REFRESH_ASSETS_PARTITION_START
#: (or `--partition-start` of `refresh-assets refresh/score/serve/ui`).
PARTITION_START = settings.partition_start()

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START)


def partition_key_problem(key: str) -> str | None:
    """Why ``key`` is no partition of this code location (the range that exists and how to move it), or None."""
    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        return f"partition {key!r} is not a date YYYY-MM-DD"
    first = dt.date.fromisoformat(PARTITION_START)
    last = daily_partitions.get_last_partition_key()
    if day < first:
        return (f"partition {key} is before the first partition {first} (partitions run {first} .. {last}); "
                f"set REFRESH_ASSETS_PARTITION_START={day:%Y-%m-01} or earlier (or --partition-start) to move it")
    if last is None or key > last:
        return (f"partition {key} does not exist yet: the last partition is {last} (a day's partition exists once "
                "the day is over, UTC)")
    return None
