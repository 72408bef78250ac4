"""A read-only HTTP server for the HTML reports of committed outputs (``refresh-assets reports``).

The Dagster UI can only show a server-side path for a report, which a browser on another machine cannot open;
the assets put ``report_url(...)`` (a link to this server) in their metadata instead.

What is served, and why nothing else can be:

* only the files named in ``REPORTS`` (one per asset), of outputs the store lists as committed;
* the partition and output folder in a URL are looked up among the names the store lists, never joined onto a
  path as sent, so ``..``, encoded slashes, absolute paths and hidden ``.staging-*`` folders match nothing (404);
* the file must be in its output's manifest, and its bytes must still have the sha256 recorded at commit (else
  409): what a browser shows is what the run wrote;
* the store is read on every request, so a new output is served without a restart.

Endpoints: ``GET /`` (the latest report per asset and partition), ``GET /reports/{asset}/{partition}/{output}/
{file}`` (``output`` may be ``current``), ``GET /healthz``. Any method but GET/HEAD is a 405.

The outputs root may be a local folder or an object-store URL (whatever ``open_output_store`` opens: fsspec/UPath);
on an object store each request lists and reads objects over the network, so it is slower, not different.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# the links live apart so the assets can make them without importing the web stack
from refresh_assets.serving.report_links import (CURRENT, DEFAULT_REPORTS_URL, REPORTS, REPORTS_URL_VARIABLE,
                                                 report_path as _report_path, report_url)

__all__ = ["CURRENT", "DEFAULT_REPORTS_URL", "REPORTS", "REPORTS_URL_VARIABLE", "PortInUseError",
           "create_reports_app", "is_loopback", "report_url", "serve_reports"]


# The reports are self-contained (plotly / Evidently inline their scripts, styles and data): inline scripts and
# styles run, nothing else loads, nothing is sent anywhere (connect-src 'none'), and no other page may frame them.
# No 'unsafe-eval': plotly and Evidently only use `new Function` as a fallback when globalThis is missing.
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
              "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
INDEX_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
READ_METHODS = ("GET", "HEAD")


class _NotFound(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Changed(Exception):
    """The output exists but no longer is what was committed (file hash, manifest or pointer)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _ReadOnlyHeaders:
    """405 for every method but GET/HEAD (whatever the path), and nosniff / no-cache on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            response = JSONResponse({"detail": f"method {scope['method']} not allowed: this server is read-only "
                                               "(GET, HEAD)"}, status_code=405, headers={"Allow": "GET, HEAD"})
            await self._with_headers(response, scope, receive, send)
            return
        await self._with_headers(self.app, scope, receive, send)

    @staticmethod
    async def _with_headers(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Cache-Control", "no-cache")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await app(scope, receive, send_with_headers)


# ------------------------------------------------------------------------------------------ the store


def _open_store(outputs_root: Any):
    from refresh_assets.core.object_store import open_output_store

    return open_output_store(outputs_root)


def _child_names(folder: Any) -> list[str]:
    """Names of the sub-folders of ``folder`` that the store could have written (so no hidden ones), sorted."""
    from refresh_assets.core.artifacts import UnsafePathError, safe_component

    names = []
    try:
        if not folder.is_dir():
            return []
        for entry in folder.iterdir():
            try:
                safe_component(entry.name, "folder")
            except UnsafePathError:
                continue
            if entry.is_dir():
                names.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names)


def _listed(name: str, names: list[str]) -> str | None:
    """The store's own string equal to ``name`` (so later paths are built from the listing, not the request)."""
    return next((listed for listed in names if listed == name), None)


def _is_local(store: Any) -> bool:
    from refresh_assets.core.object_store import ObjectOutputStore

    return not isinstance(store, ObjectOutputStore)


def _find_output(store: Any, asset: str, partition: str, output: str) -> tuple[str, str, Any]:
    """(asset, partition, output folder) as the store lists them, or _NotFound naming what is missing."""
    from refresh_assets.core.artifacts import OutputStoreError, UnsafePathError

    listed_asset = _listed(asset, list(REPORTS))
    if listed_asset is None:
        raise _NotFound(f"no reports for asset {asset!r}; served: {', '.join(REPORTS)}")
    listed_partition = _listed(partition, _child_names(store.root / listed_asset))
    if listed_partition is None:
        raise _NotFound(f"{listed_asset} has no partition {partition!r}")
    try:
        if output == CURRENT:
            output_dir = store.current(listed_asset, listed_partition)
            if output_dir is None:
                raise _NotFound(f"{listed_asset} {listed_partition} has no current output")
        else:
            output_dir = next((entry for entry in store.list_outputs(listed_asset, listed_partition)
                               if entry.name == output), None)
            if output_dir is None:
                raise _NotFound(f"{listed_asset} {listed_partition} has no committed output {output!r}")
    except UnsafePathError:  # a partition folder that is a symlink out of the store
        raise _NotFound(f"{listed_asset} has no partition {partition!r}") from None
    except (OutputStoreError, ValueError) as error:  # a damaged current.json or manifest
        raise _Changed(f"{listed_asset} {listed_partition}: {_first_line(error)}") from None
    return listed_asset, listed_partition, output_dir


def _read_report(store: Any, asset: str, partition: str, output: str, file: str) -> bytes:
    """The bytes of a committed report, read once: hashed against its manifest's sha256, then served."""
    from refresh_assets.core.artifacts import sha256_bytes

    asset, partition, output_dir = _find_output(store, asset, partition, output)
    where = f"{asset}/{partition}/{output_dir.name}"
    name = REPORTS[asset]
    if file != name:
        raise _NotFound(f"{where} has no report {file!r} (the report of {asset} is {name})")
    try:
        manifest = store.read_manifest(output_dir)
    except (OSError, ValueError, RuntimeError) as error:  # gone, not JSON, not an object (OutputStoreError)
        raise _Changed(f"{where}: its manifest cannot be read ({_first_line(error)})") from None
    files = manifest.get("files")
    entry = files.get(name) if isinstance(files, dict) else None
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(expected, str):
        raise _NotFound(f"{where} has no {name} in its manifest")
    path = output_dir / name
    if _is_local(store) and (path.is_symlink() or not path.resolve().is_relative_to(Path(store.root).resolve())):
        raise _Changed(f"{where}/{name} changed since it was committed (it is now a link)")
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _NotFound(f"{where}/{name} is in the manifest but no longer on disk") from None
    if sha256_bytes(data) != expected:
        raise _Changed(f"{where}/{name} changed since it was committed (sha256 differs from the manifest's); "
                       "re-materialize it")
    return data


def _latest_reports(store: Any) -> list[tuple[str, str, str | None, str]]:
    """(asset, partition, current output folder or None, why none) per partition of each report asset, newest
    partition first."""
    rows = []
    for asset in REPORTS:
        for partition in reversed(_child_names(store.root / asset)):
            try:
                current = store.current(asset, partition)
                rows.append((asset, partition, current.name if current is not None else None,
                             "" if current is not None else "no current output"))
            except Exception as error:  # noqa: BLE001 - one damaged partition must not hide the others
                rows.append((asset, partition, None, _first_line(error)))
    return rows


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


# ------------------------------------------------------------------------------------------ the app


def create_reports_app(outputs_root: str | Path) -> FastAPI:
    """The read-only reports app over the output store at ``outputs_root`` (a folder or an object-store URL)."""
    store = _open_store(outputs_root)
    app = FastAPI(title="refresh-assets reports", version="1",
                  description="HTML reports of committed outputs, read-only.",
                  docs_url=None, redoc_url=None, openapi_url=None)  # nothing but the reports is served
    app.state.store = store
    app.add_middleware(_ReadOnlyHeaders)

    @app.exception_handler(_NotFound)
    async def _not_found(_request: Request, error: _NotFound) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=404)

    @app.exception_handler(_Changed)
    async def _changed(_request: Request, error: _Changed) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail
        if error.status_code == 404:  # no route: say what is served instead of "Not Found"
            detail = (f"nothing is served at {request.url.path[:200]!r}: reports are at "
                      "/reports/<asset>/<partition>/<output or current>/<file>, listed at /")
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)

    @app.api_route("/reports/{asset}/{partition}/{output}/{file}", methods=list(READ_METHODS),
                   response_class=HTMLResponse)
    def report(asset: str, partition: str, output: str, file: str) -> HTMLResponse:
        return HTMLResponse(_read_report(store, asset, partition, output, file),
                            headers={"Content-Security-Policy": REPORT_CSP})

    @app.api_route("/", methods=list(READ_METHODS), response_class=HTMLResponse)
    def index() -> HTMLResponse:
        items = []
        for asset, partition, output, note in _latest_reports(store):
            label = html.escape(f"{asset} {partition}")
            if output is None:
                items.append(f"<li>{label}: {html.escape(note)}</li>")
                continue
            href = html.escape(_report_path(asset, partition, output), quote=True)
            items.append(f'<li><a href="{href}">{label}</a> <small>({html.escape(output)})</small></li>')
        body = "\n".join(items) or "<li>no reports yet</li>"
        page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>refresh-assets reports</title></head>"
                "<body><h1>Reports</h1><p>The current report of every asset and partition (newest partition "
                f"first).</p><ul>\n{body}\n</ul></body></html>")
        return HTMLResponse(page, headers={"Content-Security-Policy": INDEX_CSP})

    @app.api_route("/healthz", methods=list(READ_METHODS))
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


# ------------------------------------------------------------------------------------------ running it


class PortInUseError(OSError):
    """The port is taken (another server, or an earlier one still running)."""


def is_loopback(host: str) -> bool:
    """True when only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so a busy port is one clear error (uvicorn logs and
    calls sys.exit instead)."""
    family, kind, proto, _name, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(error.errno, f"port {port} on {host} is already in use: stop what holds it or "
                                              "choose another with --port") from None
        raise
    return sock


def serve_reports(outputs_root: str | Path, host: str = "127.0.0.1", port: int = 8020, *,
                  on_listening: Callable[[], None] | None = None) -> None:
    """Serve the reports with uvicorn until interrupted (no access log). PortInUseError when the port is taken;
    ``on_listening`` runs once the port is bound (the CLI prints its URL there, not before a failed bind)."""
    import uvicorn

    sock = _bind(host, port)
    try:
        if on_listening is not None:
            on_listening()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        config = uvicorn.Config(create_reports_app(outputs_root), host=host, port=port, access_log=False,
                                log_level="info")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
