"""The operator's settings, as the command line gives them (see ``__main__``)."""

from __future__ import annotations

from dataclasses import dataclass

from channelapp_operator.actuate import VOLATILE_STATUS_INTERVAL
from channelapp_operator.dial_manners import DESTINATION_DIALS_PER_SECOND, GLOBAL_DIALS_PER_SECOND
from channelapp_operator.permissions import RECHECK


@dataclass(frozen=True)
class OperatorConfig:
    # /healthz fails when an app's loop has not beaten for this many seconds.
    liveness_timeout: float = 60.0
    # Seconds a replica's peering record lives without keep-alive: a standby replica
    # takes over this long after the active one died.
    peering_lifetime: int = 60
    # Connection attempts to the apps' Redis shards per second, all apps together,
    # and to any one host:port.
    dials_per_second: float = GLOBAL_DIALS_PER_SECOND
    dials_per_destination_per_second: float = DESTINATION_DIALS_PER_SECOND
    # Seconds between checks that the operator still holds its permissions.
    permission_check_interval: float = RECHECK
    # Watching every namespace: namespaces with their own namespaced release are left alone.
    clusterwide: bool = False
    # Threads the poll loops' status patches run on (scale writes have a few of their own).
    api_threads: int = 16
    # Seconds between status writes of an app whose only change is a volatile figure
    # (queue depth and age, load, ready counts); other changes are written at once.
    status_interval: float = VOLATILE_STATUS_INTERVAL
