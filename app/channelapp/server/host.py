"""What a socket's session and the lost-state checks may use of the protocol server.

:class:`channelapp.server.protocol_server.ProtocolServer` satisfies :class:`SocketHost`; the
helpers take this narrow interface, not the server, so they do not import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from channelapp.layer import BaseChannelLayer
from channelapp.settings import Settings


class OpenSocket(Protocol):
    """An open WebSocket's session, as the server's registry holds it."""

    @property
    def reply(self) -> str: ...


class SocketHost(Protocol):
    """The protocol server seen from one of its sockets."""

    @property
    def settings(self) -> Settings: ...

    @property
    def layer(self) -> BaseChannelLayer: ...

    @property
    def sockets(self) -> Mapping[web.WebSocketResponse, OpenSocket]:
        """Every open socket, with its session."""
        ...

    async def send(self, channel: str, message: Mapping[str, Any]) -> str | None:
        """Send to the layer; on refusal the reason ("full", "unavailable", "too_large")."""
        ...

    async def disconnect(self, reply: str, path: str, code: int, order: int) -> None:
        """Tell the application the socket is gone."""
        ...

    async def close_socket(self, ws: web.WebSocketResponse, code: int, why: str) -> None:
        """Close one open socket from outside its session."""
        ...
