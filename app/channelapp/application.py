"""The app object that both the protocol server and the worker load as ``MODULE:ATTR``."""

from __future__ import annotations

from collections.abc import Sequence

from channelapp.routing import Route, Router
from channelapp.settings import Settings
from channelapp.spec import PROTOCOL_CHANNELS


class App:
    """Routes plus settings::

    app = App([path("/ws/chat/<room>/", ChatConsumer)], settings=Settings(allowed_origins=["*"]))
    """

    def __init__(self, routes: Sequence[Route] = (), settings: Settings | None = None) -> None:
        self.router = Router(routes)
        self.settings = settings or Settings()

    @property
    def channels(self) -> list[str]:
        """Every channel this app's workers consume: the protocol ones, then custom routes."""
        return [*PROTOCOL_CHANNELS, *self.router.custom_channels]
