"""Channels 1.x's ``channels.test``: a project's consumer tests, run on channelapp.

``ChannelTestCase`` (and ``TransactionChannelTestCase``) is Django's ``TestCase`` with an
in-memory channel layer made for each test: ``Channel(...).send``, ``Group(...).send``,
channel sessions and the clients below all reach it, and the consumers a client runs run
in the test's own thread (so they see the test's database transaction). The routing is the
project's (``CHANNELAPP_ROUTING``, else ``CHANNEL_LAYERS["default"]["ROUTING"]``; its
channelapp routes are left out) unless :class:`apply_routes` replaces it::

    class LiveblogTests(ChannelTestCase):
        def test_post(self):
            client = WSClient()
            client.send_and_consume("websocket.connect", path="/liveblog/news/stream/")
            Post.objects.create(liveblog=blog, body="hello")
            self.assertEqual(client.receive()["html"], "<p>hello</p>")

A client reads its replies in Channels 1's shape: what a consumer sent to its reply
channel, as it was sent; a ``Group`` send (which channelapp turns into
``websocket.send`` / ``websocket.close`` messages) reads back as ``{"text": ...}``,
``{"bytes": ...}``, ``{"close": True or code}``.

Outside a channel test case the clients use the process's layer, as Channels 1's did (in
channelapp: the one ``CHANNELAPP_REDIS_URLS`` names, see :mod:`channelapp.sync`).

As with Channels 1's test client, a message no route matches fails ``consume`` (no default
``websocket.connect`` consumer accepts it), ``DenyConnection`` propagates to the test, and a
``ChannelSocketException`` runs. As under a channelapp worker, a socket's channel session
is deleted after its ``websocket.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import hashlib
import json as json_module
import secrets
import string
import threading
import types
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any, ClassVar, TypeVar, cast

from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.auth import authenticate
from django.contrib.auth import login as django_login
from django.test import TestCase, TransactionTestCase

from channelapp import sync
from channelapp.compat.channel import (
    DEFAULT_CHANNEL_LAYER,
    ChannelLayer,
    Dispatch,
    Group,
    channel_layers,
    reset_dispatch,
    set_dispatch,
    websocket_messages,
)
from channelapp.compat.exceptions import ChannelSocketException
from channelapp.compat.message import Message
from channelapp.compat.routing import Router, include, is_channels1_entry, resolve_routing
from channelapp.consumers.context import Context
from channelapp.layer import InMemoryChannelLayer
from channelapp.sessions import session_store_for
from channelapp.settings import Settings
from channelapp.spec import WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT

__all__ = [
    "ChannelTestCase",
    "ChannelTestCaseMixin",
    "Client",
    "HttpClient",
    "TransactionChannelTestCase",
    "WSClient",
    "apply_routes",
]

T = TypeVar("T")

_WEBSOCKET_REPLY_KEYS = frozenset({"accept", "text", "bytes", "close"})

# --- the layer and the routing of a test ---------------------------------------------------------


class _TestLayer:
    """A fresh in-memory layer on an event loop of its own (a daemon thread), made this
    process's runtime (:mod:`channelapp.sync`) until :meth:`stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="channelapp-test-layer", daemon=True
        )
        self._thread.start()
        layer = InMemoryChannelLayer()
        settings = Settings()
        self.runtime = sync.Runtime(
            self.loop,
            layer,
            settings,
            session_store_for(layer, settings.session_ttl),
            sync.new_pool(1),
        )
        # Bound in a throwaway context: the runtime becomes the process's (the test's thread
        # and any thread it starts reach it) and nothing is left in the test's own context.
        contextvars.copy_context().run(sync.bind, self.runtime)
        if sync.current() is not self.runtime:
            self.stop()
            raise RuntimeError(
                "a channelapp worker's runtime is bound in this thread: channel tests run "
                "outside any worker"
            )

    def stop(self) -> None:
        sync.unbind(self.runtime)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        self.runtime.pool.shutdown(wait=False)


_router: Router | None = None  # the routing clients consume with (a test case's, apply_routes')


def _project_routing() -> list[Any]:
    """The Channels 1 entries of the project's routing, as its worker would route."""
    dotted = getattr(django_settings, "CHANNELAPP_ROUTING", None)
    if dotted is None:
        layers = getattr(django_settings, "CHANNEL_LAYERS", None)
        default = layers.get(DEFAULT_CHANNEL_LAYER) if isinstance(layers, dict) else None
        dotted = default.get("ROUTING") if isinstance(default, dict) else None
    if dotted is None:
        return []
    return [entry for entry in resolve_routing(dotted) if is_channels1_entry(entry)]


def _current_router() -> Router:
    return _router if _router is not None else Router(_project_routing())


def _set_router(router: Router | None) -> Router | None:
    global _router
    previous, _router = _router, router
    return previous


def _layer(alias: str) -> ChannelLayer:
    return channel_layers[alias]  # a KeyError names the one alias channelapp has


def _channels1_shape(content: dict[str, Any]) -> dict[str, Any]:
    """A WebSocket message channelapp made of a Channels 1 reply (a Group send), back in
    Channels 1's shape; any other message as it is."""
    kind = content.get("type")
    rest = set(content) - {"type"}
    if kind == "websocket.accept" and not rest:
        return {"accept": True}
    if kind == "websocket.send" and rest in ({"text"}, {"bytes"}):
        return {key: content[key] for key in rest}
    if kind == "websocket.close" and rest <= {"code"}:
        code = content.get("code", 1000)
        return {"close": True if code == 1000 else code}
    return content


def _receive(channel: str, alias: str) -> dict[str, Any] | None:
    """The next message waiting on ``channel`` (without waiting), or None."""
    _layer(alias)
    got = sync.call(sync.current().layer.receive_many([channel], max_messages=1, timeout=0))
    return _channels1_shape(got[0][1]) if got else None


def _next_message(channel: str, alias: str) -> Message | None:
    content = _receive(channel, alias)
    return None if content is None else Message(content, channel, _layer(alias))


def _run_consumer(
    consumer: Callable[..., T],
    content: dict[str, Any],
    channel: str,
    alias: str,
    kwargs: dict[str, Any],
) -> T | None:
    """``consumer(message, **kwargs)`` in this thread, with what a worker gives it (the
    runtime context behind sessions, the reply channel of a connecting socket)."""
    runtime = sync.current()
    ctx = Context(runtime.layer, runtime.settings, channel, content, runtime.sessions, kwargs)
    message = Message(content, channel, _layer(alias), ctx=ctx)
    connecting = ctx.reply_channel if channel == WEBSOCKET_CONNECT else None
    token = set_dispatch(Dispatch(ctx, connecting))
    try:
        return consumer(message, **kwargs)
    except ChannelSocketException as exc:
        exc.run(message)
        return None
    finally:
        reset_dispatch(token)
        if channel == WEBSOCKET_DISCONNECT and ctx.reply_channel:
            sync.call(runtime.sessions.delete(ctx.reply_channel))


# --- test cases ----------------------------------------------------------------------------------


class ChannelTestCaseMixin:
    """Gives each test an in-memory channel layer and the project's routing, and
    :meth:`get_next_message` to read what was sent to a channel."""

    #: Channel layer aliases the test uses; channelapp has one, ``"default"``.
    test_channel_aliases: ClassVar[list[str]] = [DEFAULT_CHANNEL_LAYER]

    def _setup_and_call(self, result: Any, debug: bool = False) -> None:
        for alias in self.test_channel_aliases:
            _layer(alias)
        layer = _TestLayer()
        try:
            previous = _set_router(Router(_project_routing()))
        except BaseException:
            layer.stop()
            raise
        try:
            cast(Any, super())._setup_and_call(result, debug)
        finally:
            _set_router(previous)
            layer.stop()

    def get_next_message(
        self, channel: str, alias: str = DEFAULT_CHANNEL_LAYER, require: bool = False
    ) -> Message | None:
        """The next message sent to ``channel`` during the test, or None (with ``require``,
        a failure of the test)."""
        message = _next_message(channel, alias)
        if message is None and require:
            raise AssertionError(f"Expected a message on channel {channel}, got none")
        return message


class ChannelTestCase(ChannelTestCaseMixin, TestCase):  # type: ignore[misc]
    """Django's ``TestCase`` (each test in a transaction) with a channel layer per test."""


class TransactionChannelTestCase(ChannelTestCaseMixin, TransactionTestCase):  # type: ignore[misc]
    """Django's ``TransactionTestCase`` with a channel layer per test."""


# --- clients -------------------------------------------------------------------------------------


def _random_letters(count: int) -> str:
    return "".join(secrets.choice(string.ascii_letters) for _ in range(count))


class Client:
    """Sends messages as one client (with its own reply channel), runs their consumers and
    reads what they sent back."""

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER) -> None:
        self.alias = alias
        self.reply_channel = self._new_reply_channel(alias)

    @staticmethod
    def _new_reply_channel(alias: str) -> str:
        return alias + _random_letters(5)

    @property
    def channel_layer(self) -> ChannelLayer:
        return _layer(self.alias)

    def get_next_message(self, channel: str) -> Message | None:
        """The next message sent to ``channel``, or None."""
        return _next_message(channel, self.alias)

    def get_consumer_by_channel(self, channel: str) -> Any:
        """The consumer the routing gives a message on ``channel`` (with empty text)."""
        found = _current_router().match(Message({"text": ""}, channel, self.channel_layer))
        return found[0] if found is not None else None

    def send(self, to: str, content: Mapping[str, Any] | None = None) -> None:
        """Sends ``content`` (with this client's ``reply_channel``) to channel ``to``."""
        message = copy.deepcopy(dict(content or {}))
        message.setdefault("reply_channel", self.reply_channel)
        self.channel_layer.send(to, message)

    def consume(self, channel: str, fail_on_none: bool = True) -> Any:
        """Takes the next message of ``channel`` and runs its consumer; returns what the
        consumer returns. With ``fail_on_none``, no message or no consumer fails the test."""
        content = _receive(channel, self.alias)
        if content is None:
            if fail_on_none:
                raise AssertionError(f"No message for channel {channel}")
            return None
        found = _current_router().match(Message(content, channel, self.channel_layer))
        if found is None:
            if fail_on_none:
                raise AssertionError(f"Can't find consumer for message {content!r} on {channel}")
            return None
        consumer, kwargs = found
        return _run_consumer(consumer, content, channel, self.alias, kwargs)

    def send_and_consume(
        self, channel: str, content: Mapping[str, Any] | None = None, fail_on_none: bool = True
    ) -> Any:
        """:meth:`send` then :meth:`consume`: one message's whole life."""
        self.send(channel, content)
        return self.consume(channel, fail_on_none=fail_on_none)

    def receive(self) -> Any:
        """The content of the next message sent to this client, or None."""
        return _receive(self.reply_channel, self.alias)

    def join_group(self, group_name: str) -> None:
        Group(group_name).add(self.reply_channel)


def _session_for_reply_channel(reply_channel: str) -> Any:
    """A Django session keyed by the reply channel, as Channels 1 made one (not yet saved)."""
    engine = import_module(
        getattr(django_settings, "CHANNEL_SESSION_ENGINE", django_settings.SESSION_ENGINE)
    )
    if engine.__name__ == "django.contrib.sessions.backends.signed_cookies":
        raise ValueError(
            "You cannot use channels session functionality with signed cookie sessions!"
        )
    key = "chn" + hashlib.sha1(reply_channel.encode(), usedforsecurity=False).hexdigest()[:29]
    session = engine.SessionStore(session_key=key)
    session.keys()  # loads it: an unknown key is dropped, and set again below
    session._session_key = key
    return session


def _header_pairs(headers: Any) -> list[list[bytes]]:
    """Headers as a channelapp message carries them: ``[name, value]`` byte pairs, names in
    lower case (a ``{name: value}`` dict, Channels 1's test client's form, is converted)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [[_latin1(name).lower(), _latin1(value)] for name, value in items]


def _latin1(value: Any) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def _encoded_cookies(cookies: Mapping[str, str]) -> bytes:
    encoder: SimpleCookie = SimpleCookie()
    for name, value in cookies.items():
        encoder[name] = value
    return encoder.output(header="", sep=";").strip().encode("ascii")


class WSClient(Client):
    """A WebSocket (or HTTP) client: messages get a ``path``, ``headers`` (with cookies, the
    Django session cookie among them on the first message), ``text`` as JSON unless already
    a string, and an ``order`` with ``WSClient(ordered=True)``.

    Headers and query string take the form channelapp's protocol server gives them
    (``[name, value]`` byte pairs, names in lower case; bytes), where Channels 1's test client
    sent a dict and a str: consumers see what they will see when served."""

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER, ordered: bool = False) -> None:
        super().__init__(alias)
        self._ordered = ordered
        self._session: Any = None
        self._headers: dict[str, Any] = {}
        self._cookies: dict[str, str] = {}
        self._session_cookie = True
        self.order = 0

    @staticmethod
    def _new_reply_channel(alias: str) -> str:
        # A "websocket." name, as WebsocketCloseException asks of a socket's reply channel,
        # that channelapp does not translate (replies read back as they were sent).
        return f"websocket.{alias}!{_random_letters(12)}"

    def set_cookie(self, key: str, value: str) -> None:
        self._cookies[key] = value

    def set_header(self, key: str, value: Any) -> None:
        if key.lower() == "cookie":
            raise ValueError("Use set_cookie method for cookie header")
        self._headers[key] = value

    def get_cookies(self) -> dict[str, str]:
        cookies = dict(self._cookies)
        if self._session_cookie and apps.is_installed("django.contrib.sessions"):
            cookies[django_settings.SESSION_COOKIE_NAME] = self.session.session_key
        return cookies

    @property
    def headers(self) -> dict[str, Any]:
        """The headers of the next message, cookies included."""
        headers = copy.deepcopy(self._headers)
        cookies = self.get_cookies()
        if cookies:
            headers.setdefault("cookie", _encoded_cookies(cookies))
        return headers

    @property
    def session(self) -> Any:
        """The client's Django session, whose cookie the first message carries."""
        if not apps.is_installed("django.contrib.sessions"):
            raise OSError("Add django.contrib.sessions to the INSTALLED_APPS to use session")
        if self._session is None:
            self._session = _session_for_reply_channel(self.reply_channel)
        return self._session

    def receive(self, json: bool = True) -> Any:
        """The next reply: its text decoded as JSON (``json=True``), its text, or the whole
        message (no text); None when there is none. A WebSocket reply channelapp would refuse
        (text and bytes, a bad close code) fails here, as it would fail the consumer."""
        content = super().receive()
        if not content:
            return None
        if "type" not in content and set(content) <= _WEBSOCKET_REPLY_KEYS:
            websocket_messages(content)
        if json and isinstance(content.get("text"), str):
            return json_module.loads(content["text"])
        return content.get("text", content)

    def send(
        self,
        to: str,
        content: Mapping[str, Any] | None = None,
        text: Any = None,
        path: str = "/",
    ) -> None:
        if to != WEBSOCKET_CONNECT and "?" in path:
            path = path.split("?")[0]
        self.channel_layer.send(to, self._get_content(content, text, path))
        self._session_cookie = False

    def _get_content(
        self, content: Mapping[str, Any] | None = None, text: Any = None, path: str = "/"
    ) -> dict[str, Any]:
        message = copy.deepcopy(dict(content or {}))
        message.setdefault("reply_channel", self.reply_channel)
        if "?" in path:
            path, query_string = path.split("?", 1)
            message.setdefault("path", path)
            message.setdefault("query_string", query_string.encode("latin-1"))
        else:
            message.setdefault("path", path)
        message["headers"] = _header_pairs(
            message["headers"] if "headers" in message else self.headers
        )
        if self._ordered:
            if "order" in message:
                raise ValueError('Do not use "order" manually with "ordered=True"')
            message["order"] = self.order
            self.order += 1
        text = text if text is not None else message.get("text")
        if text is not None:
            message["text"] = text if isinstance(text, str) else json_module.dumps(text)
        return message

    def send_and_consume(  # type: ignore[override]
        self,
        channel: str,
        content: Mapping[str, Any] | None = None,
        text: Any = None,
        path: str = "/",
        fail_on_none: bool = True,
        check_accept: bool = True,
    ) -> Any:
        self.send(channel, content, text, path)
        return self.consume(channel, fail_on_none=fail_on_none, check_accept=check_accept)

    def consume(self, channel: str, fail_on_none: bool = True, check_accept: bool = True) -> Any:
        """:meth:`Client.consume`; for ``websocket.connect`` (with ``check_accept``) the first
        reply must then be ``{"accept": True}``, or the test fails."""
        result = super().consume(channel, fail_on_none=fail_on_none)
        if channel == WEBSOCKET_CONNECT and check_accept:
            received = self.receive(json=False)
            if received != {"accept": True}:
                raise AssertionError(f"Connection rejected: {received!r} != {{'accept': True}}")
        return result

    def login(self, **credentials: Any) -> bool:
        """Logs in the user ``credentials`` authenticate, in :attr:`session`; False when
        they do not, the user is inactive or sessions are not installed."""
        user = authenticate(**credentials)
        if user and user.is_active and apps.is_installed("django.contrib.sessions"):
            self._login(user)
            return True
        return False

    def force_login(self, user: Any, backend: str | None = None) -> None:
        user.backend = backend or django_settings.AUTHENTICATION_BACKENDS[0]
        self._login(user)

    def _login(self, user: Any) -> None:
        request = types.SimpleNamespace(session=self.session, META={})
        django_login(request, user)
        self.session.save()


#: Channels 1.1 kept ``HttpClient`` as a deprecated name of :class:`WSClient`.
HttpClient = WSClient


# --- apply_routes --------------------------------------------------------------------------------


class apply_routes:  # Channels 1 named it so, in lower case
    """Replaces the routing clients consume with, as a context manager, a test function's
    decorator or a test class's (for each test, from ``setUp`` to ``tearDown``).

    ``routes``: a route, a list of routes, or a list of routings (each included)."""

    def __init__(self, routes: Any, aliases: list[str] | None = None) -> None:
        self._aliases = aliases or [DEFAULT_CHANNEL_LAYER]
        self.routes = routes
        self._saved: list[Router | None] = []

    def _routing(self) -> list[Any]:
        if isinstance(self.routes, list | tuple):
            if self.routes and isinstance(self.routes[0], list | tuple):
                return [include(list(routing)) for routing in self.routes]
            return list(self.routes)
        return [self.routes]

    def enter(self) -> apply_routes:
        for alias in self._aliases:
            _layer(alias)
        self._saved.append(_set_router(Router(self._routing())))
        return self

    def exit(self, *exc_info: object) -> None:
        _set_router(self._saved.pop())

    def __enter__(self) -> apply_routes:
        return self.enter()

    def __exit__(self, *exc_info: object) -> None:
        self.exit()

    def __call__(self, test_func: T) -> T:
        if isinstance(test_func, type):
            old_setup = test_func.setUp  # type: ignore[attr-defined]
            old_teardown = test_func.tearDown  # type: ignore[attr-defined]

            def set_up(this: Any) -> None:
                self.enter()
                try:
                    old_setup(this)
                except BaseException:
                    self.exit()
                    raise

            def tear_down(this: Any) -> None:
                try:
                    old_teardown(this)
                finally:
                    self.exit()

            test_func.setUp = set_up  # type: ignore[attr-defined]
            test_func.tearDown = tear_down  # type: ignore[attr-defined]
            return test_func
        func = cast(Callable[..., Any], test_func)

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return cast(T, inner)
