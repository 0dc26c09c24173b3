"""The one place that decides where a Redis user's data lives and how it is stored.

Every key of an app starts with its prefix (``CHANNELAPP_KEY_PREFIX``; the
operator gives each ChannelApp its own, so apps sharing a Redis never see each
other's channels), lives on the shard the hash ring picks for its name, and
every stored value that carries application data goes through the layer's
serializer (msgpack, Fernet-encrypted when encryption keys are set). The channel
layer, the session store and the ordering store all take keys, shards and
encoding from here, so none of them can write a plaintext value or a foreign key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from channelapp.layer.names import non_local_name
from channelapp.layer.serializers import Serializer
from channelapp.layer.shard import Shard
from channelapp.layer.sharding import HashRing

DEFAULT_PREFIX = "channelapp"
# No ':' (it separates the prefix from the rest, so one app's SCAN cannot match another's keys).
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"key prefix must be 1-100 ASCII letters, digits, '.', '-' or '_' (no ':'), "
            f"got {prefix!r}"
        )
    return prefix


def app_prefix(namespace: str, name: str) -> str:
    """The key prefix of the ChannelApp ``namespace/name`` (the operator sets it on every pod)."""
    return validate_prefix(f"{DEFAULT_PREFIX}.{namespace}.{name}")


class KeySpace:
    """Key names, shard choice and value encoding for one app's data on a sharded Redis."""

    def __init__(self, prefix: str, shards: Sequence[Shard], serializer: Serializer) -> None:
        self.prefix = validate_prefix(prefix)
        self.shards = list(shards)
        self.ring = HashRing(len(self.shards))
        self.serializer = serializer

    # --- where ----------------------------------------------------------------------------

    def shard(self, name: str) -> Shard:
        """The shard of a channel, group or socket name."""
        return self.shards[self.ring.shard_for(name)]

    def shard_index(self, name: str) -> int:
        return self.ring.shard_for(name)

    # --- key names ------------------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """Any other key of this app: ``prefix:part:part``."""
        return ":".join((self.prefix, *parts))

    @property
    def channel_key_start(self) -> str:
        return f"{self.prefix}:ch:"

    def channel(self, channel: str) -> str:
        """A channel's list; every reply channel of one process shares ``prefix!``'s list."""
        return f"{self.prefix}:ch:{non_local_name(channel)}"

    def channel_name(self, key: str) -> str:
        """The channel (or ``prefix!``) a list key belongs to."""
        return key[len(self.channel_key_start) :]

    def group(self, group: str) -> str:
        return self.key("group", group)

    def counters(self) -> tuple[str, str, str]:
        """Statistics: sends per channel, refusals per channel, the set of channel names."""
        return self.key("sent"), self.key("full"), self.key("channels")

    def session(self, key: str) -> str:
        return self.key("session", key)

    def ordering(self, socket: str) -> list[str]:
        """A socket's next-expected counter and its parked messages."""
        return [self.key("order", socket), self.key("parked", socket)]

    def receipts(self, sender: str) -> str:
        """The receipts of one layer instance's sending script calls, kept on each Sentinel
        shard so a call sent again after a failover runs once (``Shard.keep_receipts``)."""
        return self.key("receipts", sender)

    def pattern(self) -> str:
        """SCAN pattern of every key of this app."""
        return f"{self.prefix}:*"

    # --- stored values --------------------------------------------------------------------

    def seal(self, value: dict[str, Any]) -> bytes:
        """A dict as stored: msgpack, encrypted when the layer has encryption keys."""
        return self.serializer.dumps(value)

    def unseal(self, stored: bytes) -> dict[str, Any]:
        """Inverse of :meth:`seal`; MessageCorrupt when it cannot be read with these keys."""
        return self.serializer.loads(stored)
