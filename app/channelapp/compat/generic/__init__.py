"""Channels 1.x's class-based consumers (``channelapp.compat.generic.websockets``)."""

from channelapp.compat.generic.base import BaseConsumer

__all__ = ["BaseConsumer"]
