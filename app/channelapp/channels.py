"""channelapp's Redis layer as a Channels 4 channel layer: a drop-in for channels_redis.

::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channelapp.channels.RedisChannelLayer",
            "CONFIG": {"hosts": [("127.0.0.1", 6379)]},
        }
    }

``CONFIG`` is channels_redis's: ``hosts`` (``redis://`` / ``rediss://`` / ``unix://`` URLs,
``(host, port)`` pairs, dicts with ``address`` or ``host``/``port`` and redis-py connection
keywords), ``prefix``, ``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``
(glob strings or compiled regexes, first match wins), ``symmetric_encryption_keys`` (any
strings, derived into Fernet keys as channels_redis derives them) and ``serializer_format``.
Without ``hosts`` the layer uses ``CHANNELAPP_REDIS_URLS`` (what the operator sets on its
pods), else ``redis://localhost:6379``.

Redis Sentinel host dicts are channels_redis's: ``sentinels`` (``(host, port)`` pairs, asked
in order), ``master_name``, ``sentinel_kwargs`` (``password`` is the sentinels' own; their
timeouts follow the layer's), and for the master ``db``, ``username``, ``password`` and the
layer-wide timeouts; ``failover_timeout`` (seconds a send waits for a failover to end, 15 by
default) is channelapp's. Such a dict becomes a ``redis+sentinel://`` shard URL (see
``channelapp.layer.sentinel``); TLS to Sentinel is not supported.

The layer keeps channelapp's storage (``<prefix>:ch:<channel>`` lists, sharded by
consistent hashing): it does not share queues with channels_redis processes, so every
process of a project switches together. Only this module imports ``channels``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from channels.exceptions import ChannelFull as ChannelsChannelFull
from channels.layers import BaseChannelLayer

from channelapp.layer import base as core_base
from channelapp.layer.keyspace import validate_prefix
from channelapp.layer.names import InvalidChannelName, is_process_specific, non_local_name
from channelapp.layer.redis import RedisChannelLayer as CoreRedisChannelLayer
from channelapp.settings import split_urls

log = logging.getLogger("channelapp.channels")

DEFAULT_HOST = "redis://localhost:6379"
HOSTS_ENVIRONMENT = "CHANNELAPP_REDIS_URLS"
SERIALIZER_FORMATS = ("msgpack", "json")
# redis-py keywords of a host dict that become part of its URL.
_URL_KEYS = {"address", "host", "port", "db", "username", "password", "ssl"}
# The same for a Redis Sentinel host dict.
_SENTINEL_URL_KEYS = {
    "sentinels",
    "master_name",
    "sentinel_kwargs",
    "db",
    "username",
    "password",
    "failover_timeout",
}
# Keywords of ``sentinel_kwargs`` accepted; only the password is used.
_SENTINEL_KWARGS = {"password", "socket_timeout", "socket_connect_timeout"}
# Keywords applied to every shard (channelapp's layer has one setting for all of them).
_TIMEOUT_KEYS = {"socket_timeout": "socket_timeout", "socket_connect_timeout": "connect_timeout"}


class ChannelFull(ChannelsChannelFull, core_base.ChannelFull):  # type: ignore[misc]
    """The channel holds its capacity of messages; caught as Channels' and channelapp's."""


class WrongClientPrefix(AssertionError, InvalidChannelName):
    """A receive on a reply channel another layer instance made (channels_redis asserts it)."""


def fernet_key(key: str | bytes) -> bytes:
    """The Fernet key channels_redis derives from one of its ``symmetric_encryption_keys``."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def _sentinel_url_of(where: str, entry: Mapping[str, Any]) -> str:
    """A Redis Sentinel host dict as a ``redis+sentinel://`` URL."""
    sentinels = entry.get("sentinels")
    if not sentinels or isinstance(sentinels, str | bytes | Mapping):
        raise ValueError(f"{where}: 'sentinels' must be a list of (host, port) pairs")
    name = entry.get("master_name")
    if not name or not isinstance(name, str):
        raise ValueError(f"{where}: 'master_name' (the name the sentinels monitor) is required")
    hosts = []
    for sentinel in sentinels:
        if not isinstance(sentinel, tuple | list) or len(sentinel) != 2:
            raise ValueError(f"{where}: a sentinel must be a (host, port) pair, got {sentinel!r}")
        host = str(sentinel[0])
        hosts.append(
            f"[{host}]:{int(sentinel[1])}" if ":" in host else f"{host}:{int(sentinel[1])}"
        )
    sentinel_kwargs = dict(entry.get("sentinel_kwargs") or {})
    unknown = sorted(set(sentinel_kwargs) - _SENTINEL_KWARGS)
    if unknown:
        raise ValueError(
            f"{where}: sentinel_kwargs {unknown} not supported by "
            f"channelapp.channels.RedisChannelLayer (known: {', '.join(sorted(_SENTINEL_KWARGS))})"
        )
    user = quote(str(entry.get("username") or ""), safe="")
    password = quote(str(entry.get("password") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    query: dict[str, str] = {}
    if sentinel_kwargs.get("password"):
        query["sentinel_password"] = str(sentinel_kwargs["password"])
    if "failover_timeout" in entry:
        query["failover_timeout"] = str(float(entry["failover_timeout"]))
    tail = f"?{urlencode(query)}" if query else ""
    db = int(entry.get("db", 0))
    return f"redis+sentinel://{auth}{','.join(hosts)}/{quote(name, safe='')}/{db}{tail}"


def _url_of(index: int, entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """One host dict as a URL, and the keywords that apply to the whole layer."""
    where = f"CONFIG hosts[{index}]"
    if "sentinels" in entry or "master_name" in entry:
        return _sentinel_url_of(where, entry), _layer_wide(where, entry, _SENTINEL_URL_KEYS)
    if "address" in entry:
        address = entry["address"]
        if isinstance(address, tuple | list):
            address = f"redis://{address[0]}:{int(address[1])}"
    else:
        address = f"redis://{entry.get('host', 'localhost')}:{int(entry.get('port', 6379))}"
    if not isinstance(address, str):
        raise ValueError(f"{where} 'address' must be a redis:// URL, got {address!r}")
    parts = urlsplit(address)
    scheme = "rediss" if entry.get("ssl") and parts.scheme == "redis" else parts.scheme
    netloc, path, query = parts.netloc, parts.path, parts.query
    user = quote(str(entry.get("username") or parts.username or ""), safe="")
    password = quote(str(entry.get("password") or parts.password or ""), safe="")
    if ("username" in entry or "password" in entry) and (user or password):
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:{password}@{host}" if password else f"{user}@{host}"
    if "db" in entry:
        if scheme == "unix":  # the path is the socket's
            query = "&".join(q for q in (query, f"db={int(entry['db'])}") if q)
        else:
            path = f"/{int(entry['db'])}"
    return urlunsplit((scheme, netloc, path, query, "")), _layer_wide(where, entry, _URL_KEYS)


def _layer_wide(where: str, entry: Mapping[str, Any], url_keys: set[str]) -> dict[str, Any]:
    """The keywords of a host dict that apply to the whole layer (those not in its URL)."""
    sentinel = url_keys is _SENTINEL_URL_KEYS
    layer_wide: dict[str, Any] = {}
    ssl_options: dict[str, Any] = {}
    for name, value in entry.items():
        if name in url_keys:
            continue
        if name in _TIMEOUT_KEYS:
            layer_wide[_TIMEOUT_KEYS[name]] = float(value)
        elif name.startswith("ssl_") and not sentinel:
            ssl_options[name] = value
        elif sentinel:
            raise ValueError(
                f"{where}: {name!r} is not supported by channelapp.channels.RedisChannelLayer "
                "(Sentinel host dicts take sentinels, master_name, sentinel_kwargs, db, "
                "username, password, failover_timeout, socket_timeout, socket_connect_timeout; "
                "no TLS)"
            )
        else:
            raise ValueError(
                f"{where}: {name!r} is not supported by channelapp.channels.RedisChannelLayer "
                "(host dicts take address or host/port, db, username, password, ssl, ssl_*, "
                "socket_timeout, socket_connect_timeout)"
            )
    if ssl_options:
        layer_wide["ssl_options"] = ssl_options
    return layer_wide


def decode_hosts(hosts: Any) -> tuple[list[str], dict[str, Any]]:
    """channels_redis's ``hosts`` as URLs, and the keywords for the whole layer."""
    if not hosts:
        return split_urls(os.environ.get(HOSTS_ENVIRONMENT, "")) or [DEFAULT_HOST], {}
    if isinstance(hosts, str | bytes):
        raise ValueError("CONFIG hosts must be a list of Redis hosts, even if there is only one")
    urls: list[str] = []
    layer_wide: dict[str, Any] = {}
    for index, entry in enumerate(hosts):
        if isinstance(entry, Mapping):
            url, more = _url_of(index, entry)
            for name, value in more.items():
                if layer_wide.setdefault(name, value) != value:
                    raise ValueError(
                        f"CONFIG hosts[{index}]: {name!r} differs between hosts; "
                        "channelapp.channels.RedisChannelLayer applies one to all of them"
                    )
        elif isinstance(entry, tuple | list):
            url = f"redis://{entry[0]}:{int(entry[1])}"
        elif isinstance(entry, str):
            url = entry
        else:
            raise ValueError(f"CONFIG hosts[{index}]: not a URL, (host, port) or dict: {entry!r}")
        urls.append(url)
    return urls, layer_wide


class RedisChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """A Channels 4 channel layer over channelapp's sharded Redis layer.

    Each event loop that uses it gets its own channelapp layer (Redis connections belong
    to one loop, and ``async_to_sync`` runs each call in a loop of its own); they share
    one client prefix, so a reply channel made in one loop is received in another.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: Sequence[Any] | None = None,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[str | re.Pattern[str], int] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        random_prefix_length: int = 12,
        serializer_format: str = "msgpack",
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        if serializer_format not in SERIALIZER_FORMATS:
            raise ValueError(
                f"CONFIG serializer_format {serializer_format!r} is not supported by "
                f"channelapp.channels.RedisChannelLayer (one of {', '.join(SERIALIZER_FORMATS)})"
            )
        self.group_expiry = group_expiry
        self.prefix = validate_prefix(prefix)
        self.hosts, self._layer_wide = decode_hosts(hosts)
        self._channel_capacity = dict(channel_capacity or {})
        self._keys = [fernet_key(k) for k in symmetric_encryption_keys or ()]
        # The reply channels' part of their names (``specific.<client_prefix>!<random>``).
        self.client_prefix = os.urandom(max(6, random_prefix_length) // 2 + 1).hex()[
            : max(6, random_prefix_length)
        ]
        self._cores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CoreRedisChannelLayer]
        self._cores = weakref.WeakKeyDictionary()
        # Made now to refuse a bad configuration at once, not at the first message.
        self._keyspace = self._make().keys

    # --- the channelapp layer of the running loop -----------------------------------------

    def _make(self) -> CoreRedisChannelLayer:
        core = CoreRedisChannelLayer(
            self.hosts,
            prefix=self.prefix,
            capacity=self.capacity,
            channel_capacity=self._channel_capacity,
            reply_capacity=None,  # a reply channel's list is bounded by its capacity
            expiry=self.expiry,
            group_expiry=self.group_expiry,
            encryption_keys=self._keys or None,
            process=self.client_prefix,
            **self._layer_wide,
        )
        core.expire_fetched = False
        core.on_group_full = _log_group_full
        return core

    def _core(self) -> CoreRedisChannelLayer:
        loop = asyncio.get_running_loop()
        core = self._cores.get(loop)
        if core is None:
            core = self._cores[loop] = self._make()
            self._close_with(loop)
        return core

    def _close_with(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close this loop's connections when the loop closes (``async_to_sync`` in a thread
        with no loop makes and closes one per call; its connections would stay open)."""
        close = loop.close
        layer = weakref.ref(self)

        def closing() -> None:
            this = layer()
            core = this._cores.pop(loop, None) if this is not None else None
            if core is not None and not loop.is_running() and not loop.is_closed():
                loop.run_until_complete(core.close())
            loop.close = close  # type: ignore[method-assign]
            close()

        loop.close = closing  # type: ignore[method-assign]

    @property
    def layer(self) -> CoreRedisChannelLayer:
        """channelapp's layer behind this one in the running event loop."""
        return self._core()

    # --- names ----------------------------------------------------------------------------

    def _channel(self, channel: Any, *, receive: bool = False) -> str:
        self.require_valid_channel_name(channel)
        name: str = channel
        if receive and is_process_specific(name):
            prefix = non_local_name(name)[:-1]
            if prefix.rpartition(".")[2] != self.client_prefix:
                raise WrongClientPrefix(
                    f"cannot receive on {name!r}: wrong client prefix (reply channels are "
                    "received only by the layer that made them with new_channel())"
                )
        return name

    def _group(self, group: Any) -> str:
        self.require_valid_group_name(group)
        name: str = group
        return name

    def _group_key(self, group: str) -> bytes:
        """The Redis key of a group's members."""
        return self._keyspace.group(group).encode()

    # --- the Channels layer API -----------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        name = self._channel(channel)
        try:
            await self._core().send(name, message)
        except core_base.ChannelFull as exc:
            raise ChannelFull(str(exc)) from None
        except InvalidChannelName as exc:
            raise TypeError(str(exc)) from None

    async def receive(self, channel: str) -> dict[str, Any]:
        name = self._channel(channel, receive=True)
        try:
            return await self._core().receive(name)
        except InvalidChannelName as exc:
            raise TypeError(str(exc)) from None

    async def receive_many(
        self, channels: Iterable[str], max_messages: int = 100, timeout: float | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``max_messages`` from any of ``channels`` (channelapp's batch receive)."""
        names = [self._channel(c, receive=True) for c in channels]
        return await self._core().receive_many(names, max_messages, timeout)

    async def new_channel(self, prefix: str = "specific") -> str:
        return await self._core().new_channel(prefix)

    async def group_add(self, group: str, channel: str) -> None:
        await self._core().group_add(self._group(group), self._channel(channel))

    async def group_discard(self, group: str, channel: str) -> None:
        await self._core().group_discard(self._group(group), self._channel(channel))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send to every member; members at capacity are skipped (logged), as channels_redis."""
        await self._core().group_send(self._group(group), message)

    async def flush(self) -> None:
        """Delete every key of this prefix (channels, groups) and close connections."""
        core = self._core()
        await core.flush()
        await self.close_pools()

    async def close_pools(self) -> None:
        """Close the Redis connections of the running loop (reopened on the next call)."""
        loop = asyncio.get_running_loop()
        core = self._cores.pop(loop, None)
        if core is not None:
            await core.close()

    async def close(self) -> None:
        await self.close_pools()

    # --- channelapp's statistics, for the autoscaler and dashboards -----------------------

    async def channel_statistics(self, channel: str) -> core_base.ChannelStatistics:
        return await self._core().channel_statistics(self._channel(channel))


def _log_group_full(group: str, full_members: list[str], members: int) -> None:
    log.info("%s of %s channels over capacity in group %s", len(full_members), members, group)
