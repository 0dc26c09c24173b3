"""Runtime settings shared by the protocol server and the worker.

Values come from the app object (``App(settings=Settings(...))``) and can be
overridden by ``CHANNELAPP_*`` environment variables, which is how the
operator configures pods.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# The channels a protocol server feeds and workers consume (their home is channelapp.spec).
from channelapp.spec import HTTP_REQUEST as HTTP_REQUEST
from channelapp.spec import PROTOCOL_CHANNELS as PROTOCOL_CHANNELS
from channelapp.spec import WEBSOCKET_CONNECT as WEBSOCKET_CONNECT
from channelapp.spec import WEBSOCKET_DISCONNECT as WEBSOCKET_DISCONNECT
from channelapp.spec import WEBSOCKET_RECEIVE as WEBSOCKET_RECEIVE

# Good for `channelapp dev` only: protocol servers and workers refuse to start with it.
DEVELOPMENT_SECRET_KEY = "insecure-development-key"


@dataclass
class Settings:
    # Comma-separated in the environment: redis://[:password@]host:port/db, rediss:// for TLS,
    # redis+sentinel://[:password@]h1:26379,h2:26379/<master-name>[/db] (layer/sentinel.py).
    # Empty means the in-memory layer (one process only).
    redis_urls: list[str] = field(default_factory=list)
    # Password applied to every Redis URL that has none (the operator passes it from a Secret).
    redis_password: str | None = None
    # First part of every Redis key: apps sharing a Redis need different ones (the operator
    # sets channelapp.<namespace>.<name>). Letters, digits, '.', '-', '_'.
    key_prefix: str = "channelapp"
    # Key for signed session cookies; protocol servers and workers refuse the default.
    secret_key: str = DEVELOPMENT_SECRET_KEY
    # Base64 Fernet keys (comma-separated, first encrypts) for message bodies at rest; empty = off.
    encryption_keys: list[str] = field(default_factory=list)
    # Host header values served (Django's ALLOWED_HOSTS rules: "*" any, ".example.com" the
    # domain and its subdomains). Pages of these hosts may open WebSockets. Empty: any Host
    # header, and WebSockets from pages of this machine only (localhost, 127.0.0.1, [::1]).
    allowed_hosts: list[str] = field(default_factory=list)
    # More origins allowed to open WebSockets, besides those of allowed_hosts ("*" any,
    # scheme://host[:port], host[:port], ".example.com").
    allowed_origins: list[str] = field(default_factory=list)
    # Per-channel capacity and message expiry (seconds) in the layer. A socket's replies count
    # against its own capacity: the protocol server closes a socket that far behind with 1008.
    channel_capacity: int = 1000
    # Most replies waiting in Redis for one protocol server, all its sockets together.
    reply_capacity: int = 100_000
    message_expiry: float = 60.0
    group_expiry: float = 86400.0
    # Protocol server limits.
    max_body_size: int = 1024 * 1024
    max_frame_size: int = 1024 * 1024
    response_timeout: float = 30.0
    # Seconds a client has to send a request's head (a new or idle keep-alive connection is
    # closed after it) and, separately, its whole body (408 after it).
    read_timeout: float = 10.0
    # Bytes of replies one socket may have waiting before it is closed as too slow (1008).
    send_buffer_size: int = 1024 * 1024
    # Worker: how many messages run at once, and how long SIGTERM waits for them.
    worker_concurrency: int = 64
    shutdown_timeout: float = 25.0
    # Protocol server: on SIGTERM its WebSockets are closed with 1012 (service restart)
    # spread evenly over this many seconds, so their clients reconnect over that window
    # instead of all at once; 0 closes them all at once. Not bounded by shutdown_timeout.
    drain_seconds: float = 0.0
    # Worker: how often it publishes its load (in flight, handled, busy time) for the
    # autoscaler, and how long a report counts; a killed worker stops counting after that.
    worker_report_interval: float = 0.5
    worker_report_ttl: float = 3.0
    session_ttl: float = 86400.0
    # The signed session cookie's attributes: Secure (sent over HTTPS only; set it when the
    # app is served over HTTPS) and SameSite ("Lax", "Strict" or "None", which needs Secure).
    session_cookie_secure: bool = False
    session_cookie_samesite: str = "Lax"
    # Seconds a socket's message waits for a predecessor that was lost before running anyway
    # (a predecessor whose worker was killed is known at once, within about a second).
    park_timeout: float = 5.0

    @classmethod
    def from_mapping(cls, conf: Any, name: str = "CHANNELAPP") -> Settings:
        """Settings from a mapping of field names (lower case) to values, as a Django
        project's ``CHANNELAPP`` setting holds them (None: the defaults). A key that is no
        field, or a value of the wrong type, is a ValueError that names ``name[key]``."""
        if conf is None:
            conf = {}
        if not isinstance(conf, dict):
            raise ValueError(
                f"{name} must be a dict of channelapp settings, got a {type(conf).__name__}"
            )
        defaults = cls()
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, value in conf.items():
            if key not in known:
                raise ValueError(
                    f"{name}[{key!r}] is not a channelapp setting (the keys are, in lower "
                    f"case: {', '.join(known)})"
                )
            values[key] = _checked(f"{name}[{key!r}]", value, getattr(defaults, key))
        return cls(**values)

    def protocol_side(self) -> dict[str, Any]:
        """The fields a protocol server reads (PROTOCOL_FIELDS), JSON-ready."""
        return {name: getattr(self, name) for name in PROTOCOL_FIELDS}

    @classmethod
    def env_fields(cls, environ: Mapping[str, str] | None = None) -> frozenset[str]:
        """The fields a ``CHANNELAPP_<FIELD>`` variable sets in ``environ`` (default: os.environ)."""
        env = os.environ if environ is None else environ
        return frozenset(f.name for f in fields(cls) if f"CHANNELAPP_{f.name.upper()}" in env)

    @classmethod
    def from_env(
        cls, base: Settings | None = None, environ: dict[str, str] | None = None
    ) -> Settings:
        """Copy of ``base`` with every ``CHANNELAPP_<FIELD>`` variable applied."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {f.name: getattr(base or cls(), f.name) for f in fields(cls)}
        for f in fields(cls):
            raw = env.get(f"CHANNELAPP_{f.name.upper()}")
            if raw is None:
                continue
            current = values[f.name]
            try:
                if f.name == "redis_urls":
                    values[f.name] = split_urls(raw)
                elif isinstance(current, list):
                    values[f.name] = [p.strip() for p in raw.split(",") if p.strip()]
                elif isinstance(current, bool):
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(current, int):
                    values[f.name] = int(raw)
                elif isinstance(current, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ValueError(f"CHANNELAPP_{f.name.upper()}={raw!r}: {exc}") from None
        return cls(**values)


# Numeric settings that cannot work at zero or below (a count, a size, a wait): each must be
# positive and finite. ``shutdown_timeout`` and ``drain_seconds`` may be 0 (stop without
# waiting, close every socket at once).
POSITIVE = (
    "channel_capacity",
    "reply_capacity",
    "message_expiry",
    "group_expiry",
    "max_body_size",
    "max_frame_size",
    "response_timeout",
    "read_timeout",
    "send_buffer_size",
    "worker_concurrency",
    "worker_report_interval",
    "worker_report_ttl",
    "session_ttl",
    "park_timeout",
)
NON_NEGATIVE = ("shutdown_timeout", "drain_seconds")
# What a protocol server reads of the app's settings, which the app's workers publish for it
# (channelapp.protocol_settings): a protocol server runs without the app's code.
PROTOCOL_FIELDS = (
    "allowed_hosts",
    "allowed_origins",
    "max_body_size",
    "max_frame_size",
    "read_timeout",
    "response_timeout",
    "send_buffer_size",
    "channel_capacity",
)
# What a protocol server takes from its own environment only, never from a publication: how
# to reach Redis and the secrets (needed before anything can be read, never stored there),
# the layer's own sizes and expiries (fixed when the layer is built) and how it stops (the
# operator matches drain_seconds to the pod's grace period).
PROTOCOL_ENV_ONLY = (
    "redis_urls",
    "redis_password",
    "key_prefix",
    "secret_key",
    "encryption_keys",
    "reply_capacity",
    "message_expiry",
    "group_expiry",
    "drain_seconds",
    "shutdown_timeout",
)

SAMESITE = ("Lax", "Strict", "None")


def split_urls(text: str) -> list[str]:
    """Comma-separated URLs; a piece without ``://`` continues the URL before it (the sentinel
    list of ``redis+sentinel://h1:26379,h2:26379/master``)."""
    urls: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if urls and piece and "://" not in piece:
            urls[-1] += f",{piece}"
        elif piece:
            urls.append(piece)
    return urls


def check_values(settings: Settings) -> None:
    """Raise ValueError, naming the variable, for the first numeric setting nothing can run
    with: negative sizes (every request 413), a zero timeout (every request 504), NaN or
    infinity (comparisons that are always false)."""
    for name in (*POSITIVE, *NON_NEGATIVE):
        value = getattr(settings, name)
        positive = name in POSITIVE
        what = "a positive" if positive else "a non-negative"
        kind = "integer" if isinstance(_DEFAULTS[name], int) else "finite number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            ok = False
        elif kind == "integer" and not isinstance(value, int):
            ok = False
        elif isinstance(value, float) and not math.isfinite(value):
            ok = False
        else:
            ok = value > 0 if positive else value >= 0
        if not ok:
            raise ValueError(f"CHANNELAPP_{name.upper()}={value!r}: must be {what} {kind}")
    samesite = settings.session_cookie_samesite
    if samesite not in SAMESITE:
        raise ValueError(
            f"CHANNELAPP_SESSION_COOKIE_SAMESITE={samesite!r}: must be one of {', '.join(SAMESITE)}"
        )
    if samesite == "None" and not settings.session_cookie_secure:
        raise ValueError(
            "CHANNELAPP_SESSION_COOKIE_SAMESITE=None needs CHANNELAPP_SESSION_COOKIE_SECURE=true "
            "(browsers drop a SameSite=None cookie that is not Secure)"
        )


_DEFAULTS = {f.name: f.default for f in fields(Settings)}


def _checked(where: str, value: Any, default: Any) -> Any:
    """``value`` for a field whose default is ``default``, if it has that default's type."""

    def wrong(kind: str) -> ValueError:
        return ValueError(f"{where} must be {kind}, got {value!r:.100}")

    if isinstance(default, list):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        return list(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("True or False")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if not isinstance(value, str) and not (default is None and value is None):
        raise wrong("a string")
    return value
