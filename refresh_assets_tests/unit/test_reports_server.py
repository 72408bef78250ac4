"""The read-only reports server (refresh_assets/serving/reports.py): it serves the report of a committed output,
unchanged since its commit, and nothing else (no other file, no staging folder, nothing outside the store).

Outputs are built the way the assets build them: ``store.stage(...)``, a report written into the staging folder
by "another library" and checked with ``add_file``, other files beside it, then ``commit``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from refresh_assets import cli
from refresh_assets.core.artifacts import OutputStore
from refresh_assets.serving import reports
from refresh_assets.serving.reports import REPORTS, create_reports_app, report_url

PARTITION = "2026-07-05"
SECRET = b"SECRET-NOT-A-REPORT"


def report_html(marker: str) -> str:
    # like plotly's output: inline scripts that must be allowed to run
    return (f"<!doctype html><html><head><meta charset='utf-8'><script>window.PlotlyConfig = {{}};</script></head>"
            f"<body><div id='plot'></div><script>/* plotly */ var marker = '{marker}';</script></body></html>")


def commit_comparison(store: OutputStore, partition: str = PARTITION, run_id: str = "run-1",
                      marker: str = "first") -> Path:
    with store.stage("model_comparison", partition, run_id) as out:
        out.write_json("decision.json", {"promote": False})
        out.write_parquet("holdout_scores.parquet", pd.DataFrame({"entity_id": [1, 2], "label": [0, 1]}))
        (out.path / "report.html").write_text(report_html(marker), encoding="utf-8")  # written by another library
        out.add_file("report.html")
        return out.commit({"decision": {"reason": marker}, "promote": False})


def commit_drift(store: OutputStore, partition: str = "2026-07-01", run_id: str = "run-d") -> Path:
    with store.stage("drift_report", partition, run_id) as out:
        (out.path / "drift_report.html").write_text(report_html("drift"), encoding="utf-8")
        out.add_file("drift_report.html")
        out.write_json("drift.json", {"dataset_drift": False})
        return out.commit({"drift": {"dataset_drift": False}})


@pytest.fixture
def store(tmp_path: Path) -> OutputStore:
    return OutputStore(tmp_path / "outputs")


@pytest.fixture
def client(store: OutputStore) -> TestClient:
    return TestClient(create_reports_app(store.root))


def url_path(url: str) -> str:
    return urlsplit(url).path


def assert_not_found(response, *words: str) -> None:
    assert response.status_code == 404, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    for word in words:
        assert word in detail
    assert SECRET not in response.content and b"<script" not in response.content


# ---------------------------------------------------------------------------------------------- served


def test_a_committed_report_is_served_byte_for_byte_as_html_with_safe_headers(store, client):
    final = commit_comparison(store)
    response = client.get(f"/reports/model_comparison/{PARTITION}/{final.name}/report.html")
    assert response.status_code == 200
    assert response.content == (final / "report.html").read_bytes()
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'unsafe-inline'" in csp  # plotly's inline script runs
    assert "unsafe-eval" not in csp and "connect-src 'none'" in csp and "frame-ancestors 'none'" in csp

    head = client.head(f"/reports/model_comparison/{PARTITION}/{final.name}/report.html")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(response.content)


def test_the_drift_report_is_served(store, client):
    final = commit_drift(store)
    response = client.get(f"/reports/drift_report/2026-07-01/{final.name}/drift_report.html")
    assert response.status_code == 200 and response.content == (final / "drift_report.html").read_bytes()


def test_current_follows_the_pointer_and_new_outputs_appear_without_a_restart(store, client):
    first = commit_comparison(store, run_id="run-1", marker="first")
    response = client.get(f"/reports/model_comparison/{PARTITION}/current/report.html")
    assert response.status_code == 200 and response.content == (first / "report.html").read_bytes()

    second = commit_comparison(store, run_id="run-2", marker="second")  # committed while the app runs
    response = client.get(f"/reports/model_comparison/{PARTITION}/current/report.html")
    assert b"second" in response.content and response.content == (second / "report.html").read_bytes()
    # the older output stays reachable by its folder name
    older = client.get(f"/reports/model_comparison/{PARTITION}/{first.name}/report.html")
    assert older.status_code == 200 and b"first" in older.content
    # a new partition too
    third = commit_comparison(store, partition="2026-07-12", run_id="run-3", marker="third")
    assert client.get(f"/reports/model_comparison/2026-07-12/{third.name}/report.html").status_code == 200


def test_healthz_and_the_index_of_the_latest_report_per_asset_and_partition(store, client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "no reports yet" in client.get("/").text

    commit_comparison(store, partition="2026-06-28", run_id="run-a")
    commit_comparison(store, partition=PARTITION, run_id="run-b")
    latest = commit_comparison(store, partition=PARTITION, run_id="run-c")
    drift = commit_drift(store)
    store.stage("model_comparison", PARTITION, "run-open")  # staging: never listed
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "script-src" not in index.headers["content-security-policy"]
    links = [part.split('"', 1)[0] for part in index.text.split('href="')[1:]]
    assert links == [f"/reports/model_comparison/{PARTITION}/{latest.name}/report.html",
                     "/reports/model_comparison/2026-06-28/run-a/report.html",
                     f"/reports/drift_report/2026-07-01/{drift.name}/drift_report.html"]
    for link in links:
        assert client.get(link).status_code == 200
    assert "staging" not in index.text and "run-b" not in index.text


# ---------------------------------------------------------------------------------------------- not served


def test_unknown_asset_partition_output_or_file_is_a_404_naming_it(store, client):
    final = commit_comparison(store)
    run = final.name
    assert_not_found(client.get(f"/reports/training_dataset/{PARTITION}/{run}/report.html"), "training_dataset")
    assert_not_found(client.get(f"/reports/model_comparison/2026-01-01/{run}/report.html"), "2026-01-01")
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/run-9/report.html"), "run-9")
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{run}/other.html"), "other.html")
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{run}/drift_report.html"))
    assert_not_found(client.get("/reports/drift_report/2026-07-01/current/drift_report.html"), "drift_report")
    store.partition_dir("drift_report", "2026-07-01").mkdir(parents=True)  # a partition with nothing committed
    assert_not_found(client.get("/reports/drift_report/2026-07-01/current/drift_report.html"), "no current output")
    assert_not_found(client.get("/nowhere"), "/reports/")
    assert_not_found(client.get("/docs"))
    assert_not_found(client.get("/openapi.json"))


@pytest.mark.parametrize("name", ["manifest.json", "holdout_scores.parquet", "decision.json", "current.json"])
def test_other_files_of_a_committed_output_are_never_served(store, client, name):
    final = commit_comparison(store)
    for output in (final.name, "current"):
        assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{output}/{name}"), name)


def test_a_report_on_disk_but_not_in_the_manifest_is_not_served(store, client):
    with store.stage("model_comparison", PARTITION, "run-1") as out:
        out.write_json("decision.json", {"promote": False})
        final = out.commit({"promote": False})
    (final / "report.html").write_bytes(SECRET)  # dropped in after the commit
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{final.name}/report.html"),
                     "report.html", "manifest")
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/current/report.html"))


def test_a_staging_folder_is_never_served(store, client):
    staged = store.stage("model_comparison", PARTITION, "run-1")
    (staged.path / "report.html").write_bytes(SECRET)
    staged.write_json("decision.json", {})
    assert staged.path.name.startswith(".staging-")
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{staged.path.name}/report.html"))
    # even once it has a manifest (a commit killed just before its rename)
    (staged.path / "manifest.json").write_text(json.dumps({"files": {"report.html": {"sha256": "x"}}}))
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{staged.path.name}/report.html"))
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/current/report.html"))
    staged.abort()


TRAVERSALS = [
    "/reports/model_comparison/{p}/../../../secret.txt",
    "/reports/model_comparison/..%2F..%2F..%2Fsecret.txt/current/report.html",
    "/reports/model_comparison/%2e%2e%2f%2e%2e%2f/current/report.html",
    "/reports/model_comparison/%2e%2e/{p}/{r}/report.html",
    "/reports/model_comparison/{p}/%2e%2e/report.html",
    "/reports/model_comparison/%2e%2e/current/report.html",
    "/reports/%2e%2e/{p}/{r}/report.html",
    "/reports/model_comparison/{p}/{r}/%2e%2e",
    "/reports/model_comparison/%2e/{r}/report.html",
    "/reports/model_comparison/{p}/{r}/..%2F..%2F..%2F..%2Fsecret.txt",
    "/reports/model_comparison/{p}/{r}/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "/reports/model_comparison/{p}%2F{r}/current/report.html",
    "/reports/model_comparison/{p}/{r}%2Freport.html/report.html",
    "/reports/model_comparison/{p}/{r}/%2F{root}%2Fsecret.txt",
    "/reports/model_comparison/{p}/{r}//{root}/secret.txt",
    "/reports/model_comparison/%2F{root}%2Fmodel_comparison%2F{p}/{r}/report.html",
    "/reports/model_comparison/{p}/{r}/report.html%00.txt",
    "/reports/model_comparison/{p}/{r}/.%2Freport.html",
    "/reports/model_comparison/{p}/.{r}/report.html",
    "/reports/model_comparison/{p}/{r}/manifest.json",
    "/reports/model_comparison/.{p}/{r}/report.html",
    "/reports/..%2Fmodel_comparison/{p}/{r}/report.html",
    "/reports/%2e%2e/model_comparison/{p}/{r}/report.html",
    "/{root}/secret.txt",
    "/..%2F..%2Fsecret.txt",
]


@pytest.mark.parametrize("template", TRAVERSALS)
def test_traversal_attempts_are_404_and_never_serve_anything(store, client, template):
    final = commit_comparison(store)
    (store.root.parent / "secret.txt").write_bytes(SECRET)  # beside the store: must never come back
    path = template.format(p=PARTITION, r=final.name, root=str(store.root.parent).lstrip("/"))
    assert_not_found(client.get(path))


async def _raw_get(app, path: str) -> tuple[int, bytes]:
    """One request with exactly this path (TestClient's URL handling would remove '..' segments first)."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    await app(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body


@pytest.mark.parametrize("template", [
    "/reports/model_comparison/{p}/../../../secret.txt",
    "/reports/model_comparison/../model_comparison/{p}/{r}/report.html",
    "/reports/model_comparison/{p}/{r}/../{r}/report.html",
    "/reports/model_comparison/{p}/../{r}/report.html",
    "/reports/model_comparison/../../secret.txt/x",
    "/reports/model_comparison/{p}/{r}/../../../../secret.txt",
    "/reports/model_comparison/./{p}/{r}/report.html",
    "/reports/model_comparison/{p}/{r}/{root}/secret.txt",
    "/reports/model_comparison/{p}/{r}/C:\\secret.txt",
    "/reports/model_comparison/{p}/{r}/..\\..\\..\\secret.txt",
])
def test_raw_dot_segments_reaching_the_app_are_404(store, template):
    final = commit_comparison(store)
    (store.root.parent / "secret.txt").write_bytes(SECRET)
    app = create_reports_app(store.root)
    status, body = asyncio.run(_raw_get(app, template.format(p=PARTITION, r=final.name, root=store.root.parent)))
    assert status == 404 and SECRET not in body and b"<script" not in body


def test_a_partition_linked_from_outside_the_store_is_not_served(store, client, tmp_path):
    elsewhere = OutputStore(tmp_path / "elsewhere")
    commit_comparison(elsewhere, partition="2026-01-01", run_id="run-x", marker="outside")
    store.root.joinpath("model_comparison").mkdir(parents=True)
    store.root.joinpath("model_comparison", "2026-01-01").symlink_to(elsewhere.partition_dir("model_comparison",
                                                                                             "2026-01-01"))
    for output in ("run-x", "current"):
        response = client.get(f"/reports/model_comparison/2026-01-01/{output}/report.html")
        assert response.status_code == 404 and b"outside" not in response.content
    assert client.get("/").status_code == 200


def test_a_report_replaced_by_a_link_is_not_served(store, client, tmp_path):
    final = commit_comparison(store)
    copy = tmp_path / "copy.html"
    copy.write_bytes((final / "report.html").read_bytes())  # same bytes, same sha256: still refused
    (final / "report.html").unlink()
    (final / "report.html").symlink_to(copy)
    response = client.get(f"/reports/model_comparison/{PARTITION}/{final.name}/report.html")
    assert response.status_code == 409 and b"<script" not in response.content


# ---------------------------------------------------------------------------------------------- changed


def test_a_report_changed_since_its_commit_is_a_409_and_not_served(store, client):
    final = commit_comparison(store)
    (final / "report.html").write_text(report_html("tampered"), encoding="utf-8")
    for output in (final.name, "current"):
        response = client.get(f"/reports/model_comparison/{PARTITION}/{output}/report.html")
        assert response.status_code == 409
        detail = response.json()["detail"]
        assert "changed since it was committed" in detail and "\n" not in detail and final.name in detail
        assert b"tampered" not in response.content


def test_a_deleted_report_or_a_damaged_manifest_or_pointer_is_not_served(store, client):
    final = commit_comparison(store)
    (final / "report.html").unlink()
    assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{final.name}/report.html"), "no longer")

    other = commit_comparison(store, partition="2026-07-12", run_id="run-2")
    (other / "manifest.json").write_text("{not json")
    response = client.get(f"/reports/model_comparison/2026-07-12/{other.name}/report.html")
    assert response.status_code == 409 and "manifest cannot be read" in response.json()["detail"]
    assert b"<script" not in response.content

    third = commit_comparison(store, partition="2026-07-19", run_id="run-3")
    (third.parent / "current.json").write_text(json.dumps({"run_dir": "../../x"}))
    response = client.get("/reports/model_comparison/2026-07-19/current/report.html")
    assert response.status_code == 409 and "\n" not in response.json()["detail"]
    assert client.get(f"/reports/model_comparison/2026-07-19/{third.name}/report.html").status_code == 200
    assert client.get("/").status_code == 200  # one damaged partition does not break the index


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_method_but_get_and_head_is_405(store, client, method):
    final = commit_comparison(store)
    for path in ("/", "/healthz", f"/reports/model_comparison/{PARTITION}/{final.name}/report.html", "/nowhere"):
        response = client.request(method, path)
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert (final / "report.html").read_text(encoding="utf-8") == report_html("first")


# ---------------------------------------------------------------------------------------------- report_url


def test_report_url_round_trips_through_the_app(store, client, monkeypatch):
    final = commit_comparison(store, partition="2026-07-05")
    drift = commit_drift(store)
    monkeypatch.delenv(reports.REPORTS_URL_VARIABLE, raising=False)
    url = report_url("model_comparison", PARTITION, final.name)
    assert url == f"http://127.0.0.1:8020/reports/model_comparison/{PARTITION}/{final.name}/report.html"
    assert client.get(url_path(url)).content == (final / "report.html").read_bytes()
    url = report_url("drift_report", "2026-07-01", drift.name)
    assert client.get(url_path(url)).content == (drift / "drift_report.html").read_bytes()
    assert client.get(url_path(report_url("drift_report", "2026-07-01", "current"))).status_code == 200

    monkeypatch.setenv(reports.REPORTS_URL_VARIABLE, "https://reports.example.org/churn/")
    url = report_url("model_comparison", PARTITION, final.name)
    assert url == f"https://reports.example.org/churn/reports/model_comparison/{PARTITION}/{final.name}/report.html"
    assert report_url("model_comparison", PARTITION, final.name, base_url="http://h:1") == \
        f"http://h:1/reports/model_comparison/{PARTITION}/{final.name}/report.html"


def test_report_url_quotes_components_and_refuses_what_is_not_served(store, client):
    final = commit_comparison(store, partition="2026-07-05T00:00", run_id="run:1")
    url = report_url("model_comparison", "2026-07-05T00:00", final.name, base_url="http://h")
    assert url == "http://h/reports/model_comparison/2026-07-05T00%3A00/run%3A1/report.html"
    assert client.get(url_path(url)).content == (final / "report.html").read_bytes()
    with pytest.raises(ValueError, match="training_dataset"):
        report_url("training_dataset", PARTITION, "run-1")
    for bad in ("..", "../x", "a/b", ".staging-x", ""):
        with pytest.raises(ValueError):
            report_url("model_comparison", bad, "run-1")
        with pytest.raises(ValueError):
            report_url("model_comparison", PARTITION, bad)


def test_the_served_files_are_the_report_of_each_asset():
    assert REPORTS == {"model_comparison": "report.html", "drift_report": "drift_report.html"}


# ---------------------------------------------------------------------------------------------- object store


def test_reports_on_an_object_store_are_served_and_checked_too():
    from upath import UPath

    from refresh_assets.core.object_store import open_output_store

    root = UPath(f"memory://reports-{uuid.uuid4().hex[:8]}/outputs")
    try:
        store = open_output_store(str(root))
        final = commit_comparison(store)
        client = TestClient(create_reports_app(str(root)))
        for output in (final.name, "current"):
            response = client.get(f"/reports/model_comparison/{PARTITION}/{output}/report.html")
            assert response.status_code == 200 and response.content == (final / "report.html").read_bytes()
        assert_not_found(client.get(f"/reports/model_comparison/{PARTITION}/{final.name}/manifest.json"))
        assert f"/reports/model_comparison/{PARTITION}/{final.name}/report.html" in client.get("/").text
        (final / "report.html").write_bytes(b"<script>tampered</script>")
        assert client.get(f"/reports/model_comparison/{PARTITION}/current/report.html").status_code == 409
    finally:
        if root.exists():
            root.fs.rm(root.path, recursive=True)


# ---------------------------------------------------------------------------------------------- CLI


def test_is_loopback():
    assert all(reports.is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(reports.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "reports.example.org"))


@pytest.fixture
def busy_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def test_a_busy_port_is_one_line_and_a_non_zero_exit(tmp_path, capsys, monkeypatch, busy_port):
    monkeypatch.delenv("REFRESH_ASSETS_OUTPUTS", raising=False)
    monkeypatch.setenv("REFRESH_ASSETS_DATA_DIR", str(tmp_path))  # recorded, so what cli.main exports is undone
    code = cli.main(["--data-dir", str(tmp_path), "reports", "--port", str(busy_port)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and f"port {busy_port}" in err and "--port" in err


def test_a_non_loopback_host_warns_that_anyone_can_read_the_reports(tmp_path, capsys, monkeypatch, busy_port):
    monkeypatch.setenv("REFRESH_ASSETS_DATA_DIR", str(tmp_path))
    code = cli.main(["--data-dir", str(tmp_path), "reports", "--host", "0.0.0.0", "--port", str(busy_port)])
    _out, err = capsys.readouterr()
    warning, error = err.splitlines()
    assert warning.startswith("warning: ") and "readable by anyone" in warning and str(busy_port) in warning
    assert code == 2 and error.startswith("error: ")


def test_the_links_the_assets_make_leave_the_web_stack_unimported():
    # the comparison and drift steps import report_links for their metadata; FastAPI and Starlette cost ~0.5 s
    code = ("import sys\nfrom refresh_assets.serving.report_links import report_url\n"
            "url = report_url('drift_report', '2026-07-01', 'run-1', base_url='http://h')\n"
            "print(url, sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'uvicorn'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["http://h/reports/drift_report/2026-07-01/run-1/drift_report.html", "[]"]
    assert reports.report_url is report_url and reports.REPORTS is REPORTS  # the server links what it serves
