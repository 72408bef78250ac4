"""The Dagster UI, as a person sees it: a real dagster-webserver on a SQLite instance, driven by headless Chromium.

* The global asset lineage page (/asset-groups, "Lineage" in the UI's navigation) renders every asset of the
  project once its groups are expanded; a screenshot of it is kept as docs/lineage.png (written only when the
  whole test passes).
* The launchpad of refresh_job (/locations/refresh_assets/jobs/refresh_job/playground) shows the job's run
  inputs (tuning_budget, min_improvement) in its config editor, and rollback_job's the version to roll back to
  and the reason.

The browser is Debian's chromium (/usr/bin/chromium, installed by .ci/run with apt), driven by Playwright's Python
package: Playwright's own browser download (`playwright install`) is never used.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from refresh_assets_tests.integration.dagster_processes import (
    REPO,
    dagster_processes,
    project_env,
    write_instance_yaml,
)

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("REFRESH_ASSETS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 60_000

#: The assets the lineage page must show (the refresh chain, its propagation and the drift check).
ASSETS = ("training_dataset", "candidate_ensemble", "model_comparison", "champion_model", "scoring_population",
          "production_scores", "realtime_scorer", "drift_report")
#: Every node whose name is rendered in full, used to judge whether the whole graph fits in the screenshot.
FULL_NAMES = ASSETS + ("candidate_logreg", "candidate_hist_gb")
GROUPS = ("candidates", "refresh", "scoring", "propagation", "monitoring")
SCREENSHOT = REPO / "docs" / "lineage.png"


@pytest.fixture
def browser_context(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(dir=tmp_path) as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)
        # the UI's one-time "Join the Dagster community" dialog would cover the graph
        context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def webserver(tmp_path):
    """Base URL of a dagster-webserver (no daemon) on a fresh SQLite instance."""
    home, data = tmp_path / "home", tmp_path / "data"
    write_instance_yaml(home, storage={"sqlite": {"base_dir": str(home / "storage")}})
    # Loading the code location reads no data: the warehouse path only has to be set.
    env = project_env(home, data, tmp_path / "warehouse" / "raw.duckdb")
    with dagster_processes(env, tmp_path / "logs", webserver=True, daemon=False) as port:
        yield f"http://127.0.0.1:{port}"


def dismiss_dialogs(page) -> None:
    skip = page.get_by_role("button", name="Skip")
    if skip.count() and skip.first.is_visible():
        skip.first.click()


def graph_fits(page, names) -> bool:
    """Whether every named node lies inside the graph area (below the toolbar, left of the zoom controls)."""
    toolbar = page.get_by_role("button", name="Materialize all").bounding_box()
    zoom = page.get_by_role("img", name="zoom_in").bounding_box()
    bottom, right = VIEWPORT["height"], zoom["x"] if zoom else VIEWPORT["width"]
    for name in names:
        # a node outside the view is not rendered at all: not in view yet, rather than a 60 s wait for it
        if page.get_by_text(name, exact=True).count() == 0:
            return False
        box = page.get_by_text(name, exact=True).first.bounding_box(timeout=5000)
        if box is None or box["y"] < toolbar["y"] + toolbar["height"] or box["y"] + box["height"] > bottom \
                or box["x"] < 0 or box["x"] + box["width"] > right:
            return False
    return True


def editor_text(page) -> str:
    """The whole YAML of the launchpad's config editor (CodeMirror renders only the lines in view)."""
    editor = page.locator(".CodeMirror").first
    editor.wait_for()
    return editor.evaluate("e => e.CodeMirror ? e.CodeMirror.getValue() : e.innerText")


def launchpad_config(page, field: str) -> str:
    """The launchpad's config YAML, with the job's defaults scaffolded when ``field`` is not shown yet (older
    UIs leave the defaults out of the editor until asked)."""
    text = editor_text(page)
    if field not in text:
        page.get_by_role("button", name="Scaffold all default config").click()
        page.wait_for_timeout(500)
        text = editor_text(page)
    return text


def test_lineage_graph_and_refresh_launchpad(webserver, browser_context, tmp_path):
    from playwright.sync_api import expect

    page = browser_context.new_page()
    shot = tmp_path / "lineage.png"
    try:
        # -- the global asset lineage graph
        page.goto(f"{webserver}/asset-groups")
        page.get_by_text("Global asset lineage").first.wait_for()
        page.get_by_role("button", name="Materialize all").wait_for()
        dismiss_dialogs(page)
        # the graph opens with its groups collapsed: the asset tree's toggle gives the graph the page's width,
        # then "Expand all groups" (the graph's context menu, also Alt+E) shows every asset
        page.get_by_placeholder("Jump to…").wait_for()
        toggle = page.get_by_placeholder("Jump to…").locator("xpath=following::button[1]")
        toggle.click()
        page.get_by_placeholder("Jump to…").wait_for(state="hidden")
        page.keyboard.press("Alt+e")
        # the graph renders only the nodes in view: the first ones now, every one once zoomed out below
        for name in ASSETS[:4]:
            page.get_by_text(name, exact=True).first.wait_for(state="visible")
        # zoom out until the whole graph is in view
        zoom_out = page.locator("button").filter(has=page.get_by_role("img", name="zoom_out"))
        for _ in range(10):
            page.wait_for_timeout(600)  # the zoom animates
            if graph_fits(page, FULL_NAMES + GROUPS):
                break
            zoom_out.click()
        for name in ASSETS:
            page.get_by_text(name, exact=True).first.wait_for(state="visible")
            assert page.get_by_text(name, exact=True).first.is_visible(), f"{name} not shown on the lineage page"
        dismiss_dialogs(page)
        page.screenshot(path=str(shot))

        # -- the launchpad of refresh_job: the config editor holds the project's run inputs
        page.goto(f"{webserver}/locations/refresh_assets/jobs/refresh_job/playground")
        expect(page).to_have_title(re.compile(r"refresh_job.*Launchpad"))
        expect(page.get_by_text("refresh_job").first).to_be_visible()
        dismiss_dialogs(page)
        text = launchpad_config(page, "tuning_budget")
        assert "tuning_budget:" in text and "min_improvement:" in text, text
        assert page.get_by_text("tuning_budget", exact=False).first.is_visible()
        assert page.get_by_role("button", name="Launch Run").is_visible()

        # -- the launchpad of rollback_job: a rollback from the UI names the version and the reason
        page.goto(f"{webserver}/locations/refresh_assets/jobs/rollback_job/playground")
        expect(page).to_have_title(re.compile(r"rollback_job.*Launchpad"))
        dismiss_dialogs(page)
        text = launchpad_config(page, "rollback_to_version")
        assert "rollback_to_version:" in text and "reason:" in text, text
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"))
        raise

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
