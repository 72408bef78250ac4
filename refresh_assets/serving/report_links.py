"""Links to the reports server, without the server: what the assets put in their metadata.

``reports.py`` (the server) imports FastAPI and Starlette, 0.3-0.4 s; the comparison and drift steps only need
the URL of a report, so they import this module instead and a refresh never loads the web stack.
"""

from __future__ import annotations

import os
from urllib.parse import quote

__all__ = ["CURRENT", "DEFAULT_REPORTS_URL", "REPORTS", "REPORTS_URL_VARIABLE", "report_path", "report_url"]

#: asset -> the one file of its outputs that is served
REPORTS: dict[str, str] = {"model_comparison": "report.html", "drift_report": "drift_report.html"}
#: the output name that means "the one current.json points to"
CURRENT = "current"
REPORTS_URL_VARIABLE = "REFRESH_ASSETS_REPORTS_URL"
DEFAULT_REPORTS_URL = "http://127.0.0.1:8020"


def report_path(asset: str, partition: str, output_dir_name: str) -> str:
    """The server's path of ``asset``'s report in one output folder, every component quoted."""
    from refresh_assets.core.artifacts import safe_component

    if asset not in REPORTS:
        raise ValueError(f"no report is served for asset {asset!r}; served: {', '.join(REPORTS)}")
    parts = (asset, safe_component(partition, "partition"), safe_component(output_dir_name, "output folder"),
             REPORTS[asset])
    return "/reports/" + "/".join(quote(part, safe="") for part in parts)


def report_url(asset: str, partition: str, output_dir_name: str, base_url: str | None = None) -> str:
    """The link to put in an asset's metadata (``MetadataValue.url``): the report on the reports server at
    ``base_url``, else $REFRESH_ASSETS_REPORTS_URL, else http://127.0.0.1:8020. ``output_dir_name`` is the
    committed folder's name (``final.name``), or ``"current"`` for whatever is current when the link is opened."""
    base = (base_url or os.environ.get(REPORTS_URL_VARIABLE) or DEFAULT_REPORTS_URL).strip().rstrip("/")
    return base + report_path(asset, partition, output_dir_name)
