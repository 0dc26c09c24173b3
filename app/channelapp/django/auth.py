"""The Django user of an HTTP or WebSocket message, read from its session cookie.

As Channels' ``AuthMiddleware`` does it: the cookie named ``SESSION_COOKIE_NAME`` is the
key of a session of ``SESSION_ENGINE``, and ``django.contrib.auth.get_user`` reads the
user from that session (checking its auth hash, so a password change logs sockets out
too). No cookie, or a forged, tampered or expired one, gives ``AnonymousUser``.

:func:`session_from_headers` and :func:`user_from_headers` are sync (they read the
session store and the user table): call them from sync consumers, which run in the
worker's threads. Async consumers ``await get_user(ctx)``, which runs them there.

Only ``http.request`` and ``websocket.connect`` messages carry headers: read the user at
connect and keep what the socket needs later (its id, its name) in the socket's session.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from channelapp.sync import run_sync

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase

    from channelapp.consumers.context import Context

#: A message's headers: [name, value] pairs, bytes or str (names in any case).
Headers = Iterable[Sequence[bytes | str]]


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def cookie_header(headers: Headers) -> str:
    """Every ``Cookie`` header of the message, joined as one (HTTP/2 clients split them)."""
    return "; ".join(_text(pair[1]) for pair in headers if _text(pair[0]).lower() == "cookie")


def session_from_headers(headers: Headers) -> SessionBase | None:
    """The Django session the message's session cookie names (loaded lazily, on first read),
    or None when it has no such cookie."""
    from django.conf import settings
    from django.http.cookie import parse_cookie

    key = parse_cookie(cookie_header(headers)).get(settings.SESSION_COOKIE_NAME)
    if not key:
        return None
    engine = importlib.import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key=key)


class _SessionRequest:
    """What ``django.contrib.auth.get_user`` reads of a request: its session."""

    def __init__(self, session: SessionBase) -> None:
        self.session = session


def user_from_headers(headers: Headers) -> Any:
    """The user logged in with the message's session cookie, else ``AnonymousUser``."""
    from django.contrib.auth import get_user as django_get_user
    from django.contrib.auth.models import AnonymousUser

    session = session_from_headers(headers)
    if session is None:
        return AnonymousUser()
    return django_get_user(_SessionRequest(session))


async def get_user(ctx: Context) -> Any:
    """:func:`user_from_headers` of ``ctx.message``, run in the worker's thread pool."""
    headers = ctx.message.get("headers")
    if headers is None:
        raise ValueError(
            f"{ctx.channel} messages carry no headers: read the user at websocket.connect "
            "(or http.request) and keep what the socket needs in its session"
        )
    return await run_sync(user_from_headers, headers)
