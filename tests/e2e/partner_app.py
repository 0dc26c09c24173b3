"""The echo app with settings of its own: pages of https://partner.example may open sockets."""

from __future__ import annotations

from channelapp.application import App
from channelapp.examples.echo import Echo
from channelapp.routing import path
from channelapp.settings import Settings

app = App(
    [path("/ws/echo/", Echo, protocol="websocket")],
    settings=Settings(allowed_origins=["https://partner.example"]),
)
