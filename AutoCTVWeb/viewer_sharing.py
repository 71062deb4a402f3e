"""How many pages share the viewer: one trame session (one MRML scene, one state) per server.

Every page connected to ``autoctv web``'s viewer shows and controls the same scene: the case,
the slice, the layout and the edits are the same in all of them. The viewer counts the
websocket connections (a wslink link protocol sees each connect and close) so the page can
say so when there is more than one; what keeps one page from spoiling another's work is in
:class:`~AutoCTVWeb.viewer.CaseViewer` (no silent discard of unsaved edits, buttons carry
the case they were pressed for, a completion is stored with the case it was started on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wslink.websocket import LinkProtocol


class ConnectionCounter(LinkProtocol):
    """Calls ``on_change(number of open websocket connections)`` on every connect and close."""

    def __init__(self, on_change: Callable[[int], None]) -> None:
        super().__init__()
        self._client_ids: set[str] = set()
        self._on_change = on_change

    def onConnect(self, request: Any, client_id: str) -> None:
        self._client_ids.add(client_id)
        self._on_change(len(self._client_ids))

    def onClose(self, client_id: str) -> None:
        self._client_ids.discard(client_id)
        self._on_change(len(self._client_ids))


def count_connections(server: Any, on_change: Callable[[int], None]) -> None:
    """Register a :class:`ConnectionCounter` on the trame ``server``'s websocket protocol."""

    def configure(protocol: Any) -> None:
        protocol.registerLinkProtocol(ConnectionCounter(on_change))

    server.add_protocol_to_configure(configure)
