"""The protocol's vocabulary, shared by protocol servers, workers and consumers: the channels
a protocol server feeds, the WebSocket close codes channelapp itself uses, and the shapes of
the messages on those channels (a leaf module).
"""

from __future__ import annotations

from typing import Final, Literal, NotRequired, TypedDict

# --- channels ---------------------------------------------------------------------------------
# The channels a protocol server feeds and workers consume.
HTTP_REQUEST: Final = "http.request"
WEBSOCKET_CONNECT: Final = "websocket.connect"
WEBSOCKET_RECEIVE: Final = "websocket.receive"
WEBSOCKET_DISCONNECT: Final = "websocket.disconnect"
PROTOCOL_CHANNELS = (HTTP_REQUEST, WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT)

# --- WebSocket close codes (RFC 6455 7.4.1 and its IANA registry) -----------------------------
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001  # the endpoint is going away
INVALID_PAYLOAD = 1007  # a frame the application cannot read (a JSON consumer's non-JSON text)
POLICY_VIOLATION = 1008  # used for a client too slow to read its messages
TOO_SLOW = POLICY_VIOLATION
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
# The service is restarted (a protocol server shutting down, or the layer lost its state):
# reconnect.
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013  # the server is overloaded (or lost the socket's messages)


# The replies a worker may send on a WebSocket's reply channel.
WEBSOCKET_REPLIES = ("websocket.accept", "websocket.send", "websocket.close")


# --- messages from a protocol server to the workers -------------------------------------------
class WebSocketReceive(TypedDict):
    """On ``websocket.receive``: one frame of the client (``text`` or ``bytes``)."""

    type: Literal["websocket.receive"]
    reply_channel: str
    path: str
    order: int
    text: NotRequired[str]
    bytes: NotRequired[bytes]


class WebSocketDisconnect(TypedDict):
    """On ``websocket.disconnect``: the socket is gone, with its close code."""

    type: Literal["websocket.disconnect"]
    reply_channel: str
    path: str
    code: int
    order: int
