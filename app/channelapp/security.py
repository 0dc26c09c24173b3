"""Built-in security: origin and host validation, and signed values for cookies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

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


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """May a page from ``origin`` open a WebSocket to ``host``?

    Empty ``allowed`` means same-host only; "*" allows any origin. Entries are
    scheme://host[:port], host[:port], or ".domain" for subdomains. A missing
    Origin header (a non-browser client) is allowed, as browsers always send it.
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False  # e.g. an unclosed IPv6 bracket: refused, not an error
    if not parts.scheme or not hostname:
        return False
    origin_host = parts.netloc.lower()
    if not allowed:
        return host is not None and origin_host == host.lower()
    for pattern in allowed:
        pattern = pattern.lower()
        if "://" in pattern:
            if origin.lower().rstrip("/") == pattern.rstrip("/"):
                return True
        elif pattern.startswith("."):
            name = hostname.lower()
            if name == pattern[1:] or name.endswith(pattern):
                return True
        elif origin_host == pattern or hostname.lower() == pattern:
            return True
    return False


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
    if max_age is not None and (time.time() if now is None else now) - int(stamp) > max_age:
        raise BadSignature("signed value has expired")
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
