"""refresh-assets: a Dagster code location that keeps a production churn model fresh."""
