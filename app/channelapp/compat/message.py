"""Channels 1.x's ``Message``: the content dict, its channel and its reply channel."""

from __future__ import annotations

import copy
from collections.abc import ItemsView, KeysView, ValuesView
from typing import TYPE_CHECKING, Any

from channelapp.compat.channel import Channel, ChannelLayer, channel_layers

if TYPE_CHECKING:
    from channelapp.consumers.context import Context


class Message:
    """One message as a consumer sees it: ``message.content`` (also ``message["text"]``),
    ``message.channel``, ``message.reply_channel`` (None when the message has none).

    The decorators add ``channel_session``, ``http_session`` and ``user``. ``content``
    holds the message as the runtime carries it: it has the runtime's ``type`` key too.
    """

    channel_session: Any
    http_session: Any
    user: Any

    def __init__(
        self,
        content: dict[str, Any],
        channel_name: str,
        channel_layer: ChannelLayer | None = None,
        ctx: Context | None = None,
    ) -> None:
        self.content = content
        self.channel_layer = channel_layer or channel_layers["default"]
        self.channel = Channel(channel_name, channel_layer=self.channel_layer)
        reply = content.get("reply_channel")
        self.reply_channel = Channel(reply, channel_layer=self.channel_layer) if reply else None
        self._ctx = ctx

    @property
    def ctx(self) -> Context:
        """The runtime context of the message (sessions, layer); set for messages a worker runs."""
        if self._ctx is None:
            raise RuntimeError(
                "this Message does not come from a channelapp worker, so it has no session"
            )
        return self._ctx

    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.content[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.content

    def keys(self) -> KeysView[str]:
        return self.content.keys()

    def values(self) -> ValuesView[Any]:
        return self.content.values()

    def items(self) -> ItemsView[str, Any]:
        return self.content.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self.content.get(key, default)

    def copy(self) -> Message:
        """A copy whose content can be changed without touching this one's."""
        return self.__class__(
            copy.deepcopy(self.content), self.channel.name, self.channel_layer, self._ctx
        )

    def _with(self, **changes: Any) -> Message:
        """A shallow copy with some content keys replaced (routing prefixes)."""
        return self.__class__(
            {**self.content, **changes}, self.channel.name, self.channel_layer, self._ctx
        )

    def __repr__(self) -> str:
        return f"<Message on {self.channel.name}>"
