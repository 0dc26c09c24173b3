"""A protocol server follows the settings its app's workers publish (channelapp.protocol_settings).

At start and then every second, the publication is read; when it changed, the server's
settings become its starting settings (the defaults, or the app's when it was given one,
with the environment applied) with the published protocol fields over them, except those a
``CHANNELAPP_*`` variable sets: a variable on the protocol server wins, field by field.
Readiness never waits for a publication: with the workers at zero replicas, the requests
this server queues are what wakes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from channelapp import protocol_settings
from channelapp.errors import StartupError
from channelapp.layer import BaseChannelLayer
from channelapp.settings import Settings, check_values

log = logging.getLogger("channelapp.server")


def env_settings() -> Settings:
    """A protocol server's starting settings without an app: the defaults with the
    ``CHANNELAPP_*`` variables applied; a malformed one is a StartupError."""
    try:
        settings = Settings.from_env()
        check_values(settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return settings


class SettingsHolder(Protocol):
    """What is followed: the server's one read point, ``settings``, and its layer."""

    settings: Settings
    layer: BaseChannelLayer


class Follower:
    def __init__(
        self,
        holder: SettingsHolder,
        base: Settings,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.holder = holder
        self.base = base
        # The fields a CHANNELAPP_* variable of this process sets: never replaced.
        self.from_env = Settings.env_fields(environ)
        self.generation: int | None = None

    def apply(self, published: protocol_settings.Published) -> None:
        try:
            new = protocol_settings.applied(self.base, published.values, self.from_env)
        except ValueError as exc:
            log.error("published protocol settings refused, keeping the current ones: %s", exc)
            return
        old = self.holder.settings
        changed = protocol_settings.changed_fields(old, new)
        self.generation = published.generation
        if not changed:
            return
        self.holder.settings = new
        kept = sorted(self.from_env.intersection(published.values))
        log.info(
            "protocol settings from the app's workers (generation %d): %s changed%s",
            published.generation,
            ", ".join(changed),
            f"; {', '.join(kept)} kept from the environment" if kept else "",
        )

    async def run(self, interval: float = protocol_settings.WATCH_SECONDS) -> None:
        await protocol_settings.watch(self.holder.layer, self.apply, interval)


@contextlib.asynccontextmanager
async def following(
    holder: SettingsHolder,
    base: Settings,
    *,
    interval: float = protocol_settings.WATCH_SECONDS,
    environ: Mapping[str, str] | None = None,
    enabled: bool = True,
) -> AsyncIterator[Follower | None]:
    """Follow the published settings while the block runs (when ``enabled``)."""
    if not enabled:
        yield None
        return
    follower = Follower(holder, base, environ)
    task = asyncio.create_task(follower.run(interval))
    try:
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
