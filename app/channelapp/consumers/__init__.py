"""Consumers: functions and classes for HTTP, WebSockets and custom channels, async or sync."""

from channelapp.consumers.context import Context
from channelapp.consumers.http import HttpConsumer, Request, Response, StreamingResponse
from channelapp.consumers.websocket import (
    JsonWebsocketConsumer,
    SyncJsonWebsocketConsumer,
    SyncWebsocketConsumer,
    WebsocketConsumer,
)

__all__ = [
    "Context",
    "HttpConsumer",
    "JsonWebsocketConsumer",
    "Request",
    "Response",
    "StreamingResponse",
    "SyncJsonWebsocketConsumer",
    "SyncWebsocketConsumer",
    "WebsocketConsumer",
]
