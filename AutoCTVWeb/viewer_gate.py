"""The viewer's door when an access token is set: the page asks for it, the websocket checks it.

The viewer talks to the server over one websocket (wslink). With a token set, the server's
wslink key is the token, so a websocket whose hello does not carry it is refused and is sent
nothing: no state, no image, no case. The page at ``/`` takes the token as ``?token=`` (as the
cases page does) or from a small form; a right token leads to the viewer at ``/?secret=TOKEN``
(the trame client reads its wslink key from the address), a wrong one back to the form.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .auth import authorized

VIEWER_PATHS = ("/", "/index.html")

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AutoCTV viewer</title></head>
<body style="font-family: sans-serif; background: #222; color: #eee; margin: 3em">
<h1>AutoCTV viewer</h1>
<form method="get" action="/">
<label>Access token <input id="token-field" name="token" type="password" autofocus></label>
<button id="token-button" type="submit">Enter</button>
</form>
<div id="viewer-message" style="color: #fb8c00">{message}</div>
<p><a href="/cases">Cases and uploads</a></p>
</body></html>
"""


def token_form(message: str = "") -> web.Response:
    """The small page that asks for the access token (no case data in it)."""
    return web.Response(
        text=_FORM.format(message=html.escape(message)),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def viewer_gate(token: str) -> Any:
    """aiohttp middleware: the viewer page only with the right token (nothing if none is set)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not token or request.method != "GET" or request.path not in VIEWER_PATHS:
            return await handler(request)
        secret = request.query.get("secret")
        if secret is not None and authorized(f"Bearer {secret}", token):
            return await handler(request)
        entered = request.query.get("token")
        if entered is None:
            return token_form()
        if not authorized(f"Bearer {entered}", token):
            return token_form("wrong access token")
        raise web.HTTPFound("/?secret=" + quote(entered.strip(), safe=""))

    return middleware
