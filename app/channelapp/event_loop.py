"""The event loop the servers and workers run on: asyncio's own, or uvloop's
(``CHANNELAPP_LOOP=uvloop``; ``pip install 'channelapp[uvloop]'``). Chosen per process, at
start, so a deployment can measure one against the other without a rebuild."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from channelapp.startup import StartupError

T = TypeVar("T")

LOOPS = ("asyncio", "uvloop")

log = logging.getLogger("channelapp")


def chosen() -> str:
    """``CHANNELAPP_LOOP``, checked: ``asyncio`` (the default) or ``uvloop``."""
    choice = os.environ.get("CHANNELAPP_LOOP", "").strip() or "asyncio"
    if choice not in LOOPS:
        raise StartupError(f"CHANNELAPP_LOOP must be asyncio or uvloop, got {choice!r}")
    return choice


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        choice = chosen()
        if choice == "uvloop":
            try:
                import uvloop
            except ImportError:
                raise StartupError(
                    "CHANNELAPP_LOOP=uvloop, but uvloop is not installed "
                    "(pip install 'channelapp[uvloop]')"
                ) from None
    except StartupError:
        main.close()  # never awaited: no "was never awaited" warning after the error
        raise
    if choice == "uvloop":
        # Said only when not the default: a refused start-up stays one line on stderr.
        log.info("event loop: uvloop")
        return uvloop.run(main)
    return asyncio.run(main)
