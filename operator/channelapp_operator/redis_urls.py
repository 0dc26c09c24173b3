"""Redis URLs and shard failures as the operator reports them (pure functions).

A password must never reach status, conditions, Events, logs or a pod's env,
whether it sits in the URL's user info (``redis://:pw@host``) or in its query
(``?password=pw``). A peer's own bytes never reach status either: a failure is
reported as one short class (refused, timeout, authentication failed, not a
Redis server, ...), so the operator does not tell an author what answers where.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry a credential.
_SECRET_PARAMS = frozenset(
    {"password", "pass", "pwd", "passwd", "auth", "token", "sentinel_password"}
)
# URLs anywhere in a message (an exception's text names the URL it dialled).
_URL_IN_TEXT = re.compile(r"\b(?:rediss?|redis\+sentinel|unix)://[^\s'\"<>,;)]+", re.IGNORECASE)


def _secret_param(name: str) -> bool:
    return name.lower() in _SECRET_PARAMS


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (user info or a query parameter)."""
    try:
        parts = urlsplit(url)
        # A ':' before the last '@' (a user name may hold '@'), as the CRD refuses.
        if parts.password is not None or ":" in parts.netloc.rpartition("@")[0]:
            return True
        # A '%' in a parameter's name may spell a credential's name encoded.
        if any("%" in raw.partition("=")[0] for raw in parts.query.split("&")):
            return True
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "@" in url or "password" in url.lower()
    return any(_secret_param(k) for k, _ in pairs)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hostport}" if sep else f"{user}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(_secret_param(k) for k, _ in pairs):
                query = urlencode([(k, MASK if _secret_param(k) else v) for k, v in pairs])
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return f"{url.split('://', 1)[0]}://{MASK}" if "://" in url else MASK


def redact_text(text: str) -> str:
    """Every Redis URL in ``text`` redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


# (class, substrings of the error text that mean it), first match wins. The
# authentication and protocol classes come first: their messages may also say
# "connection" or "error".
_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "authentication failed",
        ("authentication failed", "wrongpass", "noauth", "invalid password", "invalid username"),
    ),
    (
        "not a Redis server",
        (
            "protocol error",
            "reply type byte",
            "invalidresponse",
            "unparseable reply",
            "unexpected reply",
        ),
    ),
    ("connection refused", ("connection refused", "errno 111", "connect call failed")),
    (
        "name not resolved",
        (
            "name or service not known",
            "name resolution",
            "nodename nor",
            "gaierror",
            "no address associated",
            "errno -2",
            "errno -3",
        ),
    ),
    ("timeout", ("timeout", "timed out", "no reply within")),
    (
        "connection closed",
        (
            "connection closed",
            "connection to redis lost",
            "closed by server",
            "reset by peer",
            "broken pipe",
            "eof",
            "errno 104",
        ),
    ),
    ("TLS failed", ("ssl", "certificate", "tls")),
    ("server busy loading", ("loading",)),
)


def classify(message: str) -> str:
    """A short class for a shard failure's text, never the text itself."""
    lowered = message.lower()
    for name, needles in _CLASSES:
        if any(needle in lowered for needle in needles):
            return name
    return "unreachable"


_SHARD_INDEX = re.compile(r"redis shard (\d+)")


def shard_index(message: str) -> int | None:
    """The shard a layer failure names (``redis shard 3 (...)``), or None."""
    found = _SHARD_INDEX.search(message)
    return int(found.group(1)) if found else None


def describe_failure(url: str, message: str) -> str:
    """``<redacted url>: <class>``, for status, conditions, Events and logs."""
    return f"{redact_url(url)}: {classify(message)}"
