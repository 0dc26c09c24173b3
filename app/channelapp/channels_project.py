"""A Channels 4 project run by channelapp: its ``CHANNEL_LAYERS`` pointed at the app's shards.

``channelapp asgi mysite.asgi:application`` and ``channelapp runworker mysite.asgi:application
CHANNEL...`` import the project's ASGI module (which configures Django, as ``asgi.py`` does
with ``DJANGO_SETTINGS_MODULE`` and ``get_asgi_application()``), then call
:func:`point_channel_layers` before anything is served: when ``CHANNELAPP_REDIS_URLS`` is set
(the operator sets it on its pods), ``settings.CHANNEL_LAYERS["default"]`` becomes
``channelapp.channels.RedisChannelLayer`` over those shards (``CHANNELAPP_REDIS_PASSWORD``
applied to URLs without one) with ``CHANNELAPP_KEY_PREFIX`` as its ``prefix``, and layers
already built are dropped so that the first ``get_channel_layer()`` builds the new one.
The project's settings file is not edited. Of the project's own ``CONFIG`` the keys
channels_redis and channelapp share are kept (``capacity``, ``expiry``, ``channel_capacity``,
...), unless a ``CHANNELAPP_*`` variable sets them (``CHANNELAPP_CHANNEL_CAPACITY``,
``CHANNELAPP_MESSAGE_EXPIRY``, ``CHANNELAPP_GROUP_EXPIRY``, ``CHANNELAPP_ENCRYPTION_KEYS``).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from channels.layers import channel_layers
from django.conf import settings as django_settings

from channelapp.settings import Settings

log = logging.getLogger("channelapp.channels")

BACKEND = "channelapp.channels.RedisChannelLayer"
# CONFIG keys of the project's own layer kept when it is pointed at the app's shards.
KEPT_CONFIG = (
    "expiry",
    "group_expiry",
    "capacity",
    "channel_capacity",
    "symmetric_encryption_keys",
    "serializer_format",
)
# CHANNELAPP_* settings that, when set in the environment, replace a CONFIG key.
FROM_ENVIRONMENT = {
    "channel_capacity": "capacity",
    "message_expiry": "expiry",
    "group_expiry": "group_expiry",
    "encryption_keys": "symmetric_encryption_keys",
}


def with_password(url: str, password: str | None) -> str:
    """``url`` with ``password`` in it, unless it carries one (or there is none to add)."""
    if not password:
        return url
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.scheme == "unix":
        return url
    netloc = f":{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def layer_config(settings: Settings, project: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` entry for the app's shards (``settings.redis_urls``)."""
    old = (project or {}).get("CONFIG") or {}
    config = {key: old[key] for key in KEPT_CONFIG if key in old}
    set_here = Settings.env_fields()
    for field, key in FROM_ENVIRONMENT.items():
        if field in set_here:
            config[key] = getattr(settings, field)
    config["hosts"] = [with_password(url, settings.redis_password) for url in settings.redis_urls]
    config["prefix"] = settings.key_prefix
    return {"BACKEND": BACKEND, "CONFIG": config}


def point_channel_layers(settings: Settings, alias: str = "default") -> bool:
    """Point the project's ``CHANNEL_LAYERS[alias]`` at ``settings.redis_urls``; False (and
    nothing changed) when no shards are set. Django's settings must be configured."""
    if not settings.redis_urls:
        return False
    layers = dict(getattr(django_settings, "CHANNEL_LAYERS", None) or {})
    layers[alias] = layer_config(settings, layers.get(alias))
    django_settings.CHANNEL_LAYERS = layers
    channel_layers.backends = {}  # a layer built at import time is built again, pointed
    log.info(
        "CHANNEL_LAYERS[%r]: %s over %d shard(s), prefix %s",
        alias,
        BACKEND,
        len(settings.redis_urls),
        settings.key_prefix,
    )
    return True


def server_settings(settings: Settings) -> Settings:
    """The in-process server's settings: Django's ``ALLOWED_HOSTS`` unless
    ``CHANNELAPP_ALLOWED_HOSTS`` is set."""
    if "allowed_hosts" in Settings.env_fields() or not django_settings.configured:
        return settings
    hosts = list(getattr(django_settings, "ALLOWED_HOSTS", None) or [])
    if not hosts:
        return settings
    values = {**vars(settings), "allowed_hosts": hosts}
    return Settings(**values)
