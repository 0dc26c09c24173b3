"""The test project's channelapp consumers."""

from __future__ import annotations

import threading
from typing import Any

from channelapp.consumers import (
    JsonWebsocketConsumer,
    Request,
    Response,
    SyncJsonWebsocketConsumer,
)
from channelapp.django import get_user, user_from_headers

REFUSED = 4003  # the close code of a socket without a logged-in user


class WhoAmI(SyncJsonWebsocketConsumer):
    """Greets the logged-in Django user by name; closes anonymous sockets with 4003."""

    def connect(self) -> None:
        user = user_from_headers(self.message["headers"])
        self.accept()
        if not user.is_authenticated:
            self.close(REFUSED)
            return
        assert self.session is not None
        self.session["username"] = user.get_username()
        self.send_json({"greeting": f"hello {user.get_username()}"})

    def receive_json(self, content: Any) -> None:
        assert self.session is not None
        self.send_json({"user": self.session.get("username"), "echo": content})


class AsyncWhoAmI(JsonWebsocketConsumer):
    """The same with ``async def`` handlers, reading the user with ``await get_user(ctx)``."""

    async def connect(self) -> None:
        user = await get_user(self.ctx)
        await self.accept()
        if not user.is_authenticated:
            await self.close(REFUSED)
            return
        await self.send_json({"greeting": f"hello {user.get_username()}"})

    async def receive_json(self, content: Any) -> None:
        try:
            await get_user(self.ctx)  # a websocket.receive message has no headers
        except ValueError as exc:
            await self.send_json({"error": str(exc)})


def orm(request: Request) -> Response:
    """Records whether this thread's connection was closed before the message, then queries."""
    from django.contrib.auth.models import User
    from django.db import connection

    closed_at_entry = connection.connection is None
    users = User.objects.count()
    return Response.json(
        {
            "closed_at_entry": closed_at_entry,
            "open_after_query": connection.connection is not None,
            "thread": threading.current_thread().name,
            "users": users,
        }
    )
