"""Channels 1.x's auth decorators: ``message.user`` from the HTTP or the channel session.

``channel_session_user_from_http`` on a ``websocket.connect`` consumer copies the logged-in
user (Django's three auth session keys) from the HTTP session into the channel session;
``channel_session_user`` on the socket's later consumers reads it back as ``message.user``
(``AnonymousUser`` when nobody logged in), as ``request.user`` would be.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from channelapp.compat.message import Message
from channelapp.compat.sessions import channel_and_http_session, channel_session, http_session

F = TypeVar("F", bound=Callable[..., Any])


class _SessionRequest:
    """What ``django.contrib.auth.get_user`` reads of a request: its session."""

    def __init__(self, session: Any) -> None:
        self.session = session


def _user_of(session: Any) -> Any:
    if session is None:
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser()
    from django.contrib import auth

    return auth.get_user(_SessionRequest(session))


def transfer_user(from_session: Any, to_session: Any) -> None:
    """Copy the logged-in user from one session to another (Django's auth session keys)."""
    from django.contrib import auth

    keys = (auth.BACKEND_SESSION_KEY, auth.SESSION_KEY, auth.HASH_SESSION_KEY)
    if all(key in from_session for key in keys):
        for key in keys:
            to_session[key] = from_session[key]


def channel_session_user(func: F) -> F:
    """``message.user`` from the user id kept in the channel session (implies
    ``channel_session``)."""

    @functools.wraps(func)
    def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(message, "channel_session"):
            raise ValueError("Did not see a channel session to get auth from")
        message.user = _user_of(message.channel_session)
        return func(message, *args, **kwargs)

    return channel_session(inner)  # type: ignore[return-value]


def http_session_user(func: F) -> F:
    """``message.http_session`` and ``message.user`` from the request's session cookie, like
    Django's AuthenticationMiddleware (for ``http.request`` and ``websocket.connect``)."""

    @functools.wraps(func)
    def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(message, "http_session"):
            raise ValueError("Did not see a http session to get auth from")
        message.user = _user_of(message.http_session)
        return func(message, *args, **kwargs)

    return http_session(inner)  # type: ignore[return-value]


def channel_session_user_from_http(func: F) -> F:
    """For ``websocket.connect``: ``message.user`` from the session cookie, copied into the
    channel session so ``channel_session_user`` finds it on the socket's later messages."""

    @functools.wraps(func)
    def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(message, *args, **kwargs)

    return http_session_user(channel_session(inner))  # type: ignore[return-value]


def channel_and_http_session_user_from_http(func: F) -> F:
    """``channel_session_user_from_http`` that also keeps the HTTP session for later messages
    (see ``channel_and_http_session``)."""

    @functools.wraps(func)
    def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(message, *args, **kwargs)

    return http_session_user(channel_and_http_session(inner))  # type: ignore[return-value]
