"""Channels 1.x's ``BaseConsumer``: a class routed with ``route_class``, one instance per message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from channelapp.compat.auth import channel_session_user
from channelapp.compat.message import Message
from channelapp.compat.routing import RouteClass, route_class
from channelapp.compat.sessions import channel_session


class BaseConsumer:
    """Instantiating the class with a message handles it: ``method_mapping`` names the method
    for each channel; ``channel_session`` / ``channel_session_user`` wrap it in those
    decorators."""

    method_mapping: ClassVar[dict[str, str]] = {}
    channel_session: ClassVar[bool] = False
    channel_session_user: ClassVar[bool] = False

    def __init__(self, message: Message, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        self.dispatch(message, **kwargs)

    @classmethod
    def channel_names(cls) -> set[str]:
        return set(cls.method_mapping)

    @classmethod
    def as_route(cls, attrs: dict[str, Any] | None = None, **kwargs: Any) -> RouteClass:
        """A ``route_class`` for this consumer with filters ``kwargs``, on a subclass with
        ``attrs`` set when given."""
        target: type[BaseConsumer] = cls
        if attrs:
            assert isinstance(attrs, dict), "attrs must be a dict"
            target = type(cls.__name__, (cls,), attrs)
        return route_class(target, **kwargs)

    def get_handler(self, message: Message, **kwargs: Any) -> Callable[..., Any]:
        handler: Callable[..., Any] = getattr(self, self.method_mapping[message.channel.name])
        if self.channel_session_user:
            return channel_session_user(handler)
        if self.channel_session:
            return channel_session(handler)
        return handler

    def dispatch(self, message: Message, **kwargs: Any) -> Any:
        return self.get_handler(message, **kwargs)(message, **kwargs)
