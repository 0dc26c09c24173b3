"""Consumers: function consumers, WebSocket, JSON WebSocket and HTTP consumer classes."""

from channelapp.consumers.context import Context
from channelapp.consumers.http import HttpConsumer, Request, Response, StreamingResponse
from channelapp.consumers.websocket import JsonWebsocketConsumer, WebsocketConsumer

__all__ = [
    "Context",
    "HttpConsumer",
    "JsonWebsocketConsumer",
    "Request",
    "Response",
    "StreamingResponse",
    "WebsocketConsumer",
]
