"""Build and run the web server: the API, the page, the case store and the queue together."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

from .api import SETTINGS_KEY, WebSettings, add_api_routes, token_middleware
from .auth import check_bind_address
from .store import CaseStore
from .uploads import DEFAULT_MAX_UPLOAD_BYTES
from .worker import CaseQueue

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    """The page (it asks for the token itself when the server has one)."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, settings: WebSettings, page_path: str) -> None:
    """The API (behind the token check), the cases page at ``page_path`` and its files."""
    app[SETTINGS_KEY] = settings
    app.middlewares.append(token_middleware)
    add_api_routes(app)
    app.router.add_get(page_path, index)
    app.router.add_static("/autoctv-static/", STATIC_DIR)


def build_app(settings: WebSettings) -> web.Application:
    """The API-only application (``--no-viewer``): the cases page is at ``/``."""
    app = web.Application(client_max_size=settings.max_upload_bytes + 2**20)
    add_routes(app, settings, "/")
    return app


def run_server(
    *,
    host: str,
    port: int,
    data_dir: Path,
    token: str = "",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    model: Path | None = None,
    device: str = "auto",
    extra_arguments: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
    viewer: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM; the running case is cancelled and queued for next time.

    With ``viewer`` the trame-slicer viewer is the page at ``/`` and the cases page is at
    ``/cases`` (one server, one port); without it only the API and the cases page (at ``/``).

    Raises:
        InputError: a non-loopback ``host`` without a token.
        OSError: the address cannot be bound (port in use, ...).
    """
    check_bind_address(host, token)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = CaseStore(data_dir)
    queue = CaseQueue(store, model=model, device=device, extra_arguments=extra_arguments)
    settings = WebSettings(store=store, queue=queue, token=token, max_upload_bytes=max_upload_bytes)
    if viewer:
        _serve_with_viewer(settings, host, port, on_ready)
    else:
        asyncio.run(_serve(build_app(settings), host, port, queue, on_ready))
    store.close()


def _serve_with_viewer(
    settings: WebSettings, host: str, port: int, on_ready: Callable[[str], None] | None
) -> None:
    """The trame server with the viewer, the API routes bound into its aiohttp application."""
    from trame.app import get_server
    from trame_slicer import module as trame_slicer_module

    from .viewer import CaseViewer
    from .viewer_gate import viewer_gate

    server = get_server("autoctv", client_type="vue3")
    server.enable_module(trame_slicer_module)
    if settings.token:
        # the websocket's hello must carry the token, else wslink refuses it and sends nothing
        server.cli.set_defaults(authKey=settings.token)
    # every connected page has passed the websocket's check, so the viewer needs no own lock
    CaseViewer(server, settings.store, "", device=settings.queue.device)

    def bind(wslink_server: object) -> None:
        app = wslink_server.app  # type: ignore[attr-defined]
        app._client_max_size = settings.max_upload_bytes + 2**20
        app.middlewares.append(viewer_gate(settings.token))
        add_routes(app, settings, "/cases")

    def ready(**_: object) -> None:
        settings.queue.start()
        if on_ready is not None:
            shown_host = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown_host}:{port}/")

    server.controller.on_server_bind.add(bind)
    server.controller.on_server_ready.add(ready)
    try:
        server.start(
            host=host,
            port=port,
            open_browser=False,
            show_connection_info=False,
            timeout=0,
            disable_logging=True,
        )
    finally:
        settings.queue.stop()


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    queue: CaseQueue,
    on_ready: Callable[[str], None] | None,
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    queue.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            pass  # Windows: Ctrl+C ends the loop with KeyboardInterrupt instead
    shown_host = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        on_ready(f"http://{shown_host}:{port}/")
    try:
        await stop.wait()
    finally:
        await loop.run_in_executor(None, queue.stop)
        await runner.cleanup()
