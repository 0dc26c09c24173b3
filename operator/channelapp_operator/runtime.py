"""The operator's shared objects, built once from its config and handed to every handler.

``__main__`` passes an :class:`OperatorRuntime` to kopf as the operator's ``memo``;
kopf gives each handler a shallow copy of it, so every handler sees the same
registry, heartbeat, event limiter, scope, dial budget and API client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from channelapp_operator.api_threads import ApiThreads
from channelapp_operator.app_state import AppRegistry
from channelapp_operator.config import OperatorConfig
from channelapp_operator.dial_manners import SharedDialBudget
from channelapp_operator.event_limiter import EventLimiter
from channelapp_operator.kube import Kube
from channelapp_operator.metrics import Heartbeat
from channelapp_operator.scope import Scope


@dataclass
class OperatorRuntime:
    config: OperatorConfig = field(default_factory=OperatorConfig)
    # The API client: made once, after the client's configuration is loaded, and shared
    # (a per-object copy of the runtime must not make its own).
    kube: Kube = field(default_factory=Kube)
    apps: AppRegistry = field(default_factory=AppRegistry)
    events: EventLimiter = field(default_factory=EventLimiter)
    heartbeat: Heartbeat = field(init=False)
    scope: Scope = field(init=False)
    # The connection attempts all apps share.
    dials: SharedDialBudget = field(init=False)
    # The threads the poll loops' API writes run on.
    api: ApiThreads = field(init=False)

    def __post_init__(self) -> None:
        self.api = ApiThreads(self.config.api_threads)
        self.heartbeat = Heartbeat(max_silence=self.config.liveness_timeout)
        self.scope = Scope(clusterwide=self.config.clusterwide)
        self.dials = SharedDialBudget(
            rate=self.config.dials_per_second,
            per_destination=self.config.dials_per_destination_per_second,
        )
