"""The errors that stop a process before it serves, shared by every layer (a leaf module)."""

from __future__ import annotations


class AppLoadError(RuntimeError):
    """The app named by ``MODULE:ATTR`` or ``django:SETTINGS`` cannot be loaded."""


class StartupError(Exception):
    """A process cannot start; the message says why in one line."""
