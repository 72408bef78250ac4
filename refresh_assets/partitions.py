"""The one partitions definition: a partition key is the as-of date D of a refresh."""

import os

import dagster as dg

#: First refresh date the UI offers; override for your own history with REFRESH_ASSETS_PARTITION_START.
PARTITION_START = os.environ.get("REFRESH_ASSETS_PARTITION_START", "2025-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START)
