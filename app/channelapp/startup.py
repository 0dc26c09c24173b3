"""Checks that stop ``channelapp protocol`` and ``channelapp worker`` before they serve.

A split process started with settings that only make sense in one process
(no shared Redis, the built-in secret key) would appear to work and then lose
requests or accept forged cookies; it refuses to start with one line instead.
"""

from __future__ import annotations

from channelapp.application import App
from channelapp.layer import BaseChannelLayer, layer_from_settings
from channelapp.settings import DEVELOPMENT_SECRET_KEY, Settings


class StartupError(Exception):
    """A process cannot start; the message says why in one line."""


def settings_for(app: App) -> Settings:
    """The app's settings with ``CHANNELAPP_*`` applied; a malformed variable is a StartupError."""
    try:
        return Settings.from_env(app.settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def check_split_settings(settings: Settings, role: str) -> None:
    """Refuse settings a protocol server or worker cannot run safely with."""
    if not settings.redis_urls:
        raise StartupError(
            f"a {role} shares its channels through Redis: set CHANNELAPP_REDIS_URLS "
            "(e.g. redis://127.0.0.1:6379/0), or run `channelapp dev APP` for one process "
            "without Redis"
        )
    if settings.secret_key == DEVELOPMENT_SECRET_KEY:
        raise StartupError(
            "CHANNELAPP_SECRET_KEY is the built-in development key, which anyone can use to "
            f"forge session cookies: set a secret of your own before starting a {role}"
        )


def split_layer(settings: Settings, role: str) -> BaseChannelLayer:
    """The checked settings' Redis layer; a malformed URL or key is a StartupError."""
    check_split_settings(settings, role)
    try:
        return layer_from_settings(settings)
    except (ValueError, TypeError) as exc:
        raise StartupError(str(exc)) from None


def listen_error(what: str, host: str, port: int, exc: OSError) -> StartupError:
    reason = exc.strerror or str(exc)
    return StartupError(f"cannot listen for {what} on {host}:{port}: {reason}")
