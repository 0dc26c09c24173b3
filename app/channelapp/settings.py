"""Runtime settings shared by the protocol server and the worker.

Values come from the app object (``App(settings=Settings(...))``) and can be
overridden by ``CHANNELAPP_*`` environment variables, which is how the
operator configures pods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

# The channels a protocol server feeds and workers consume.
HTTP_REQUEST = "http.request"
WEBSOCKET_CONNECT = "websocket.connect"
WEBSOCKET_RECEIVE = "websocket.receive"
WEBSOCKET_DISCONNECT = "websocket.disconnect"
PROTOCOL_CHANNELS = (HTTP_REQUEST, WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT)

# Good for `channelapp dev` only: protocol servers and workers refuse to start with it.
DEVELOPMENT_SECRET_KEY = "insecure-development-key"


@dataclass
class Settings:
    # Comma-separated in the environment: redis://[:password@]host:port/db, rediss:// for TLS.
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
    # Origins allowed to open WebSockets ("*" allows any; empty allows same-host only).
    allowed_origins: list[str] = field(default_factory=list)
    # Host header values served ("*" = any).
    allowed_hosts: list[str] = field(default_factory=lambda: ["*"])
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
    # Worker: how often it publishes its load (in flight, handled, busy time) for the
    # autoscaler, and how long a report counts; a killed worker stops counting after that.
    worker_report_interval: float = 0.5
    worker_report_ttl: float = 3.0
    session_ttl: float = 86400.0
    # Seconds a socket's message waits for a predecessor that was lost before running anyway
    # (a predecessor whose worker was killed is known at once, within about a second).
    park_timeout: float = 5.0

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
                if isinstance(current, list):
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
