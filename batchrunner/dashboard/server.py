"""The dashboard's web server (aiohttp): one page, its two static files, ``/api/status`` and ``/ws``.

- ``GET /`` the page; ``GET /static/app.js``, ``/static/style.css`` what it loads (from the package: no
  build step, no CDN);
- ``GET /api/status?run=NAME`` one snapshot (api/watching.py) as JSON;
- ``GET /ws?run=NAME`` a WebSocket that pushes a snapshot every ``interval_s`` until the page goes.

It only reads the database. It binds 127.0.0.1 unless told otherwise, and any other address needs a
token; with a token, every request (the page, its files, the API, the WebSocket) must carry it as
``?token=`` or gets 403. No key is in any snapshot (the store keeps none), and the latest answers are in
it only with ``show_content``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import Any, Final
from urllib.parse import quote

from aiohttp import WSCloseCode, WSMsgType, web

from batchrunner.api.watching import StatusFields, Watcher, snapshot_document
from batchrunner.config import Settings
from batchrunner.errors import UsageError

__all__ = ["LOOPBACK", "serve_dashboard", "start_dashboard"]

log = logging.getLogger(__name__)

LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""Addresses served without a token: only this machine can reach them."""
STATIC: Final = {"app.js": "text/javascript", "style.css": "text/css"}
HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:",
}
MAX_SHARED: Final = 64
WATCHER: Final = web.AppKey("watcher", Watcher)
OPTIONS: Final = web.AppKey[dict[str, Any]]("options")
SOCKETS: Final = web.AppKey[set[web.WebSocketResponse]]("sockets")
SHARED: Final = web.AppKey[dict[str | None, "_Shared"]]("shared")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _static(name: str) -> str:
    return resources.files("batchrunner.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def build_app(
    watcher: Watcher,
    *,
    run: str | None,
    token: str | None,
    status_fields: StatusFields,
    interval_s: float = 1.0,
) -> web.Application:
    """The dashboard's routes over ``watcher``; ``run`` is the run shown when the page names none."""
    app = web.Application(middlewares=[_token_middleware(token)])
    app[WATCHER] = watcher
    app[OPTIONS] = {"run": run, "token": token, "status_fields": status_fields, "interval_s": interval_s}
    app[SOCKETS] = set()
    app[SHARED] = {}
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _file)
    app.router.add_get("/favicon.ico", _no_icon)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/ws", _socket)
    return app


def _token_middleware(token: str | None) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None:
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(status=403, text="403: this dashboard needs its ?token=\n")
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(HEADERS)
        return response

    return check


def _query(request: web.Request) -> str:
    """The token's query string for the page's own links (empty without a token)."""
    token = request.app[OPTIONS]["token"]
    return "" if token is None else "?token=" + quote(token, safe="")


async def _page(request: web.Request) -> web.Response:
    html = _static("index.html").replace("__QUERY__", _query(request).replace("&", "&amp;"))
    return web.Response(text=html, content_type="text/html")


async def _file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(text=_static(name), content_type=STATIC[name])


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _document(request: web.Request) -> str:
    """The snapshot of the run the request names (else the dashboard's) as JSON text. Pages watching
    the same run share one snapshot a tick: it is read again only once it is half an interval old."""
    options = request.app[OPTIONS]
    run = request.query.get("run") or options["run"]
    shared = request.app[SHARED]
    if run not in shared and len(shared) >= MAX_SHARED:  # names from the query: keep the map bounded
        shared.clear()
    loop = asyncio.get_running_loop()
    async with shared.setdefault(run, _Shared()).lock:
        entry = shared[run]
        if entry.text is None or loop.time() - entry.taken > options["interval_s"] / 2:
            snapshot = await request.app[WATCHER].snapshot(run)
            entry.text = json.dumps(snapshot_document(snapshot, options["status_fields"]))
            entry.taken = loop.time()
        return entry.text


class _Shared:
    """The latest snapshot of one run, and the lock its readers take turns on."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.text: str | None = None
        self.taken = 0.0


async def _status(request: web.Request) -> web.Response:
    return web.Response(text=await _document(request), content_type="application/json")


async def _close_sockets(app: web.Application) -> None:
    """On shutdown, tell the pages we are going (1001), so that they reconnect and we need not wait."""
    open_sockets = app[SOCKETS]
    for ws in [*open_sockets]:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the dashboard stops")


async def _socket(request: web.Request) -> web.WebSocketResponse:
    """Push a snapshot, wait ``interval_s`` (or until the page sends or goes), again."""
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        await _push(request, ws)
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def _push(request: web.Request, ws: web.WebSocketResponse) -> None:
    interval = request.app[OPTIONS]["interval_s"]
    loop = asyncio.get_running_loop()
    while not ws.closed:
        started = loop.time()
        try:
            await ws.send_str(await _document(request))
        except ConnectionResetError:
            break
        try:
            message = await asyncio.wait_for(ws.receive(), max(interval - (loop.time() - started), 0.05))
        except TimeoutError:
            continue
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            break


def dashboard_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    query = "" if token is None else "?token=" + quote(token, safe="")
    return f"http://{shown}:{port}/{query}"


@asynccontextmanager
async def start_dashboard(
    settings: Settings,
    *,
    run: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    show_content: bool = False,
    status_fields: StatusFields,
    interval_s: float = 1.0,
) -> AsyncIterator[str]:
    """Serve the dashboard of ``settings``' database while the block runs; yield its URL (with the token).

    ``port=0`` picks a free port. A host other than the loopback needs a ``token`` (a UsageError
    otherwise). ``status_fields`` renders a status report as ``status --json``'s fields.
    """
    if host not in LOOPBACK and not token:
        raise UsageError(f"--host {host} lets other machines in: give a --token too")
    watcher = Watcher(settings.run.db, show_content=show_content)
    app = build_app(watcher, run=run, token=token or None, status_fields=status_fields, interval_s=interval_s)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)  # no access log: URLs hold the token
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}") from exc
        bound = runner.addresses[0][1]
        yield dashboard_url(host, bound, token or None)
    finally:
        await runner.cleanup()
        await watcher.close()


async def serve_dashboard(
    settings: Settings,
    *,
    announce: Callable[[str], None],
    run: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    show_content: bool = False,
    status_fields: StatusFields,
) -> None:
    """``batchrunner dashboard``: serve, ``announce`` the URL, and stop on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with start_dashboard(
            settings,
            run=run,
            host=host,
            port=port,
            token=token,
            show_content=show_content,
            status_fields=status_fields,
        ) as url:
            announce(url)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
