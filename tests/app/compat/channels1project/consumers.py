"""Channels 1 consumers over Django's sessions and users."""

from __future__ import annotations

import json
from typing import Any

from channelapp.compat.auth import (
    channel_session_user,
    channel_session_user_from_http,
    http_session_user,
)
from channelapp.compat.generic.websockets import JsonWebsocketConsumer
from channelapp.compat.handler import AsgiHandler
from channelapp.compat.message import Message
from channelapp.compat.sessions import channel_and_http_session
from django.http import JsonResponse, StreamingHttpResponse


def reply(message: Message, content: Any) -> None:
    message.reply_channel.send({"text": json.dumps(content)})  # type: ignore[union-attr]


@http_session_user
def whoami(message: Message) -> None:
    """An HTTP consumer answering with a Django response."""
    response = JsonResponse(
        {
            "user": message.user.username,
            "authenticated": message.user.is_authenticated,
            "has_http_session": message.http_session is not None,
        }
    )
    response.set_cookie("seen", "yes")
    for chunk in AsgiHandler.encode_response(response):
        message.reply_channel.send(chunk)  # type: ignore[union-attr]


def stream(message: Message) -> None:
    response = StreamingHttpResponse(iter([b"one,", b"two,", b"three"]))
    for chunk in AsgiHandler.encode_response(response):
        message.reply_channel.send(chunk)  # type: ignore[union-attr]


@channel_session_user_from_http
def user_connect(message: Message) -> None:
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


@channel_session_user
def user_receive(message: Message) -> None:
    reply(message, {"user": message.user.username})


@channel_and_http_session
def both_connect(message: Message) -> None:
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


@channel_and_http_session
def both_receive(message: Message) -> None:
    session = message.http_session
    reply(
        message,
        {
            "http_session": session.session_key if session is not None else None,
            "user_id": session.get("_auth_user_id") if session is not None else None,
        },
    )


class HttpUser(JsonWebsocketConsumer):
    http_user = True

    def receive(self, content: Any = None, **kwargs: Any) -> None:
        self.send({"user": self.message.user.username, "got": content})
