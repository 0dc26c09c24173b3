"""Built-in security: origin and host validation, and signed values for cookies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

# A Host header: a DNS name or an IPv4 address, or a bracketed IPv6 address, and a port.
_HOST_RE = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:[0-9]+)?")


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Django's ALLOWED_HOSTS rules: "*" any, ".example.com" the domain and its subdomains."""
    if not allowed or "*" in allowed:
        return True
    match = _HOST_RE.fullmatch(host.strip().lower()) if host else None
    if match is None:
        return False  # missing or malformed (e.g. "evil.com/.example.com"): never allowed
    name = match.group(1)  # without the port
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.startswith("."):
            if name == pattern[1:] or name.endswith(pattern):
                return True
        elif name == pattern or match.string == pattern:  # match.string: the whole host
            return True
    return False


# Hosts a development machine serves itself from: what WebSockets are accepted from when
# ALLOWED_HOSTS is not set (as Django's DEBUG does for its ALLOWED_HOSTS).
LOOPBACK_HOSTS = (".localhost", "localhost", "127.0.0.1", "[::1]")
WEB_SCHEMES = ("http", "https")  # the origins of pages (browsers send no other)
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else _DEFAULT_PORTS.get(scheme)


def _origin_matches(parts: SplitResult, pattern: str) -> bool:
    """``scheme://host[:port]`` compares scheme, host and port (default ports filled in);
    ``host[:port]`` and ``.domain`` (ALLOWED_HOSTS rules) match pages' origins of any port
    unless one is given, over http or https."""
    pattern = pattern.strip().lower()
    if "://" not in pattern:
        return parts.scheme in WEB_SCHEMES and host_allowed(parts.netloc, [pattern])
    try:
        want = urlsplit(pattern)
        want_port = want.port
    except ValueError:
        return False
    name = want.hostname or ""
    host = parts.hostname or ""
    if name.startswith("."):
        same_host = host == name[1:] or host.endswith(name)
    else:
        same_host = host == name
    return (
        same_host
        and want.scheme == parts.scheme
        and _port(want.scheme, want_port) == _port(parts.scheme, parts.port)
    )


def origin_allowed(
    origin: str | None, allowed_origins: Sequence[str], allowed_hosts: Sequence[str] = ()
) -> bool:
    """May a page from ``origin`` open a WebSocket here?

    Pages of the hosts the app serves may: an origin whose host matches ``allowed_hosts``
    (ALLOWED_HOSTS: "*" any, ".example.com" the domain and its subdomains), over http or
    https; with no ALLOWED_HOSTS set, pages of this machine only (localhost, 127.0.0.1,
    [::1]). The Host header is never trusted for this (a page on a name the attacker's DNS
    points here sends a matching one). ``allowed_origins`` adds more: "*" any,
    scheme://host[:port] exactly (scheme and port compared), host[:port], ".domain". A
    missing Origin header (a non-browser client) is allowed, as browsers always send it.
    """
    if origin is None:
        return True
    if "*" in allowed_origins:
        return True
    try:
        parts = urlsplit(origin.strip().lower())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False  # e.g. an unclosed IPv6 bracket: refused, not an error
    if not parts.scheme or not parts.hostname:
        return False
    hosts = list(allowed_hosts) or list(LOOPBACK_HOSTS)
    return any(_origin_matches(parts, p) for p in [*allowed_origins, *hosts])


# Seconds a signature may be stamped ahead of this clock (servers' clocks differ a little);
# further ahead it was not made by a server of this app, or its clock is wrong.
CLOCK_SKEW = 60.0


class BadSignature(ValueError):
    """A signed value was tampered with, signed with another key, or is too old."""


def sign(value: bytes, key: str, *, now: float | None = None) -> str:
    """``base64(value).timestamp.hmac``: tamper-evident, not encrypted."""
    stamp = str(int(time.time() if now is None else now))
    payload = base64.urlsafe_b64encode(value).decode().rstrip("=") + "." + stamp
    mac = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()
    return payload + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def unsign(
    signed: str, key: str, *, max_age: float | None = None, now: float | None = None
) -> bytes:
    try:
        data, stamp, mac = signed.rsplit(".", 2)
    except ValueError:
        raise BadSignature("malformed signed value") from None
    expected = hmac.new(key.encode(), f"{data}.{stamp}".encode(), hashlib.sha256).digest()
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except ValueError:
        raise BadSignature("malformed signature") from None
    if not hmac.compare_digest(expected, given):
        raise BadSignature("signature does not match")
    try:
        age = (time.time() if now is None else now) - int(stamp)
    except ValueError:
        raise BadSignature("malformed timestamp") from None
    if age < -CLOCK_SKEW:
        raise BadSignature("signed value is stamped in the future")
    if max_age is not None and age > max_age:
        raise BadSignature("signed value has expired")
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
