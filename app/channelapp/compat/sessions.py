"""Channels 1.x's session decorators over the runtime's sessions.

``message.channel_session`` is the runtime's per-socket session: keyed by the
message's reply channel, kept in the layer's Redis (or in memory) with a TTL
(``session_ttl``), loaded once per message and saved after the consumer when it
changed. Values must be msgpack-able (str, int, float, bool, None, bytes, lists
and dicts of them), as Django's JSON session serializer asked for JSON-able ones.

``message.http_session`` is the Django session named by the request's session cookie
(read with ``channelapp.django.auth.session_from_headers``), or by a ``session_key``
query parameter as Channels 1 allowed; None when there is neither.

``enforce_ordering`` asks for nothing: channelapp runs each socket's websocket.connect,
receive and disconnect messages in order, always (the ``order`` field, see
``channelapp.worker.ordering``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, MutableMapping
from importlib import import_module
from typing import Any, TypeVar
from urllib.parse import parse_qs

from channelapp.compat.message import Message
from channelapp.django.auth import session_from_headers
from channelapp.sessions import Session
from channelapp.sync import call

F = TypeVar("F", bound=Callable[..., Any])


class ChannelSession(MutableMapping[str, Any]):
    """The per-socket session with the parts of Django's ``SessionBase`` consumers use:
    ``modified``, ``session_key`` (the reply channel), ``save()``, ``flush()``."""

    def __init__(self, message: Message, session: Session) -> None:
        self._message = message
        self._session = session

    @property
    def session_key(self) -> str:
        return self._session.key

    @property
    def modified(self) -> bool:
        return self._session.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._session.modified = value

    def __getitem__(self, key: str) -> Any:
        return self._session[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._session[key] = value

    def __delitem__(self, key: str) -> None:
        del self._session[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._session)

    def __len__(self) -> int:
        return len(self._session)

    def __contains__(self, key: object) -> bool:
        return key in self._session

    def clear(self) -> None:
        self._session.clear()

    def is_empty(self) -> bool:
        return not self._session

    def exists(self, session_key: str) -> bool:
        return session_key == self.session_key

    def load(self) -> dict[str, Any]:
        return dict(self._session)

    def save(self, must_create: bool = False) -> None:
        call(self._message.ctx.sessions.save(self._session))

    def flush(self) -> None:
        """Empty the session (Django calls this for a session whose user's password changed)."""
        self._session.clear()
        self.save()

    def cycle_key(self) -> None:
        """The key is the socket's reply channel: there is no other key to move to."""

    def __repr__(self) -> str:
        return f"<ChannelSession {self.session_key} {dict(self._session)!r}>"


def _message_of(args: tuple[Any, ...]) -> Message:
    for arg in args[:2]:  # a function's message, or a method's (after self)
        if isinstance(arg, Message):
            return arg
    raise ValueError("channel_session called without Message instance")


def channel_session(func: F) -> F:
    """Gives the consumer ``message.channel_session``: state that lives as long as the socket
    (every message with the same ``reply_channel``), saved after the consumer if changed."""

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _message_of(args)
        if hasattr(message, "channel_session"):
            try:
                return func(*args, **kwargs)
            finally:
                if message.channel_session.modified:
                    message.channel_session.save()
        if not message.reply_channel:
            raise ValueError(
                "No reply_channel sent to consumer; @channel_session can only be used on "
                "messages containing it."
            )
        session = ChannelSession(message, message.ctx.sync.session())
        message.channel_session = session
        try:
            return func(*args, **kwargs)
        finally:
            if session.modified:
                session.save()

    return inner  # type: ignore[return-value]


def enforce_ordering(func: F | None = None, slight: bool = False) -> Any:
    """Channels 1's ordering decorator, kept so code ports unchanged.

    channelapp runs every socket's websocket messages in order whatever the decorator
    says (strict, and so also slight, ordering), so this only checks that it decorates
    a consumer of websocket channels, and gives it ``message.channel_session`` as
    Channels 1 did.
    """

    def decorator(func: F) -> F:
        with_session = channel_session(func)

        @functools.wraps(func)
        def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
            if not message.channel.name.startswith("websocket."):
                raise ValueError(
                    f"@enforce_ordering decorates websocket consumers; this message is on "
                    f"{message.channel.name!r}, which has no per-socket order"
                )
            if "order" not in message.content:
                raise ValueError(
                    "No `order` value in message; @enforce_ordering can only be used on "
                    "messages containing it."
                )
            return with_session(message, *args, **kwargs)

        return inner  # type: ignore[return-value]

    if func is not None:
        return decorator(func)
    return decorator


# --- HTTP sessions (Django) ---------------------------------------------------------------------


def _django_session(session_key: str) -> Any:
    from django.conf import settings

    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key=session_key)


def _query_session_key(message: Message) -> str | None:
    raw = message.content.get("query_string", b"")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    values = parse_qs(text).get("session_key")
    return values[0] if values else None


def http_session_of(message: Message) -> Any:
    """The Django session of ``message``'s cookie (or ``session_key`` parameter), or None."""
    key = _query_session_key(message)
    if key:
        return _django_session(key)
    headers = message.content.get("headers")
    if not headers:
        return None
    return session_from_headers(headers)


def http_session(func: F) -> F:
    """Gives the consumer ``message.http_session``: the Django session of the request's session
    cookie (read only as Channels 1 had it: it never sets a cookie), or None. For
    ``http.request`` and ``websocket.connect`` messages, which carry the headers."""

    @functools.wraps(func)
    def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
        if hasattr(message, "http_session"):
            try:
                return func(message, *args, **kwargs)
            finally:
                if message.http_session is not None and message.http_session.modified:
                    message.http_session.save()
        session = http_session_of(message)
        message.http_session = session
        result = func(message, *args, **kwargs)
        if session is not None and session.modified:
            session.save()
        return result

    return inner  # type: ignore[return-value]


def channel_and_http_session(func: F) -> F:
    """Both sessions; the HTTP session's key is kept in the channel session on connect, so
    later messages of the socket (which carry no cookies) get the HTTP session too."""

    @functools.wraps(func)
    def inner(message: Message, *args: Any, **kwargs: Any) -> Any:
        from django.conf import settings

        cookie = settings.SESSION_COOKIE_NAME
        if message.http_session is not None and cookie not in message.channel_session:
            message.channel_session[cookie] = message.http_session.session_key
        elif message.http_session is None and cookie in message.channel_session:
            message.http_session = _django_session(message.channel_session[cookie])
        return func(message, *args, **kwargs)

    return http_session(channel_session(inner))  # type: ignore[return-value]
