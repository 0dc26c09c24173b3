"""channelapp: Django-Channels-style realtime apps, split into protocol servers and workers."""

__version__ = "0.1.0"
