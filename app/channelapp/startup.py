"""Checks that stop ``channelapp protocol`` and ``channelapp worker`` before they serve.

A split process started with settings that only make sense in one process
(no shared Redis, the built-in secret key) would appear to work and then lose
requests or accept forged cookies; it refuses to start with one line instead.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from channelapp.errors import StartupError as StartupError  # importable from here too
from channelapp.layer import BaseChannelLayer, layer_from_settings
from channelapp.settings import DEVELOPMENT_SECRET_KEY, Settings, check_values

if TYPE_CHECKING:
    from channelapp.application import App

# A session key must resist guessing: this many bytes at least, of this many different
# characters (a placeholder such as "..." or "changeme", or a key of spaces, is refused).
MIN_SECRET_KEY_BYTES = 32
MIN_SECRET_KEY_CHARACTERS = 8
# ...and this many bits by a simple estimate (see secret_key_bits()).
MIN_SECRET_KEY_BITS = 128
# Words of the placeholders found in examples and templates, never in a random key.
PLACEHOLDER_WORDS = (
    "change",
    "replace",
    "secret-key",
    "secret_key",
    "secretkey",
    "placeholder",
    "insecure",
    "example",
    "not-for-production",
)
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def settings_for(app: App) -> Settings:
    """The app's settings with ``CHANNELAPP_*`` applied; a malformed variable is a StartupError."""
    try:
        settings = Settings.from_env(app.settings)
        check_values(settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return settings


def secret_key_bits(key: str) -> float:
    """A rough upper estimate of ``key``'s entropy: its length times log2 of the alphabet of
    the character classes it uses, not counting a character that continues a run (``aaa``,
    ``abc``, ``987``) or ends a three-character sequence seen before."""
    classes = (
        any(c.islower() and c.isascii() for c in key) * 26
        + any(c.isupper() and c.isascii() for c in key) * 26
        + any(c.isdigit() and c.isascii() for c in key) * 10
        + any(c.isascii() and not c.isalnum() for c in key) * 33
        + any(not c.isascii() for c in key) * 100
    )
    if classes < 2:
        return 0.0
    counted = 0
    seen: set[str] = set()
    for i, c in enumerate(key):
        triple = key[max(0, i - 2) : i + 1]
        repeated = len(triple) == 3 and triple in seen
        seen.add(triple)
        if i >= 2 and ord(c) - ord(key[i - 1]) == ord(key[i - 1]) - ord(key[i - 2]):
            continue
        if repeated:
            continue
        counted += 1
    return counted * math.log2(classes)


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` cannot sign session cookies, or None when it can."""
    if key == DEVELOPMENT_SECRET_KEY:
        return "is the built-in development key, which anyone can use to forge session cookies"
    size = len(key.encode())
    if size < MIN_SECRET_KEY_BYTES:
        return (
            f"is {size} bytes long: a key anyone can guess forges session cookies, use at "
            f"least {MIN_SECRET_KEY_BYTES} random bytes"
        )
    if not key.strip() or len(set(key)) < MIN_SECRET_KEY_CHARACTERS:
        return (
            f"has {len(set(key.strip()))} different characters: a key anyone can guess forges "
            f"session cookies, use at least {MIN_SECRET_KEY_CHARACTERS}, e.g. a random one"
        )
    lowered = key.lower()
    if lowered.startswith("django-insecure-") or any(w in lowered for w in PLACEHOLDER_WORDS):
        return (
            "looks like a placeholder: a key anyone can read in a template forges session cookies"
        )
    bits = secret_key_bits(key)
    if bits < MIN_SECRET_KEY_BITS:
        return (
            f"is too easy to guess (about {bits:.0f} bits, by a simple estimate): a key anyone "
            f"can guess forges session cookies, use at least {MIN_SECRET_KEY_BITS} random bits"
        )
    return None


def check_split_settings(settings: Settings, role: str) -> None:
    """Refuse settings a protocol server or worker cannot run safely with."""
    if not settings.redis_urls:
        raise StartupError(
            f"a {role} shares its channels through Redis: set CHANNELAPP_REDIS_URLS "
            "(e.g. redis://127.0.0.1:6379/0), or run `channelapp dev APP` for one process "
            "without Redis"
        )
    problem = secret_key_problem(settings.secret_key)
    if problem is not None:
        raise StartupError(
            f"CHANNELAPP_SECRET_KEY {problem}: set a secret of your own before starting a "
            f"{role} ({MAKE_A_KEY} makes one)"
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
