"""Channel and group name rules (ASGI 1.0).

A name is ASCII letters, digits, ``-``, ``_`` and ``.``, at most one ``!`` (a
process-specific reply channel, ``prefix!suffix``) or one ``?`` (a
single-reader channel), and shorter than 100 characters.
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 100

_CHANNEL_RE = re.compile(r"[a-zA-Z0-9\-_.]+([!?][a-zA-Z0-9\-_.]*)?")
_GROUP_RE = re.compile(r"[a-zA-Z0-9\-_.]+")


class InvalidChannelName(ValueError):
    """A channel or group name breaks the ASGI naming rules."""


def validate_channel_name(name: object, *, receive: bool = False) -> str:
    """Return ``name`` if it is a valid channel name, else raise :class:`InvalidChannelName`.

    With ``receive=True`` a process-specific name must be the bare prefix
    (``prefix!``) or a full name; both are accepted.
    """
    if not isinstance(name, str):
        raise InvalidChannelName(f"channel name must be str, got {type(name).__name__}")
    if not name or len(name) >= MAX_NAME_LENGTH:
        raise InvalidChannelName(
            f"channel name must be 1..{MAX_NAME_LENGTH - 1} characters, got {len(name)}: {name[:40]!r}"
        )
    if not _CHANNEL_RE.fullmatch(name):
        raise InvalidChannelName(
            f"invalid channel name {name!r}: only ASCII letters, digits, '-', '_', '.' "
            "and one '!' or '?' are allowed"
        )
    return name


def validate_group_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidChannelName(f"group name must be str, got {type(name).__name__}")
    if not name or len(name) >= MAX_NAME_LENGTH:
        raise InvalidChannelName(
            f"group name must be 1..{MAX_NAME_LENGTH - 1} characters, got {len(name)}: {name[:40]!r}"
        )
    if not _GROUP_RE.fullmatch(name):
        raise InvalidChannelName(
            f"invalid group name {name!r}: only ASCII letters, digits, '-', '_' and '.' are allowed"
        )
    return name


def non_local_name(name: str) -> str:
    """The part of a process-specific name that routes it: ``'a.b!xyz'`` -> ``'a.b!'``."""
    bang = name.find("!")
    return name[: bang + 1] if bang >= 0 else name


def is_process_specific(name: str) -> bool:
    return "!" in name
