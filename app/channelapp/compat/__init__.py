"""Channels 1.x's API on channelapp: porting a Channels 1 project is an import change.

=================================  =====================================================
Channels 1.x                       channelapp
=================================  =====================================================
``channels``                       ``channelapp.compat`` (Channel, Group, route, include)
``channels.sessions``              ``channelapp.compat.sessions``
``channels.auth``                  ``channelapp.compat.auth``
``channels.routing``               ``channelapp.compat.routing``
``channels.generic.websockets``    ``channelapp.compat.generic.websockets``
``channels.exceptions``            ``channelapp.compat.exceptions``
``channels.handler.AsgiHandler``   ``channelapp.compat.handler.AsgiHandler`` (encode_response)
``channels.test``                  ``channelapp.compat.test`` (a project's tests; needs Django)
=================================  =====================================================

Consumers stay plain functions ``def consumer(message, **kwargs)``; the worker runs them
in its thread pool. See docs/porting-from-channels-1.md for what differs.
"""

from channelapp.compat.channel import DEFAULT_CHANNEL_LAYER, Channel, Group, channel_layers
from channelapp.compat.routing import include, route, route_class

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "Channel",
    "Group",
    "channel_layers",
    "include",
    "route",
    "route_class",
]
