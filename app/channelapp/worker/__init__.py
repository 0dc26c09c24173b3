"""The worker: runs consumers for messages taken from the channel layer."""

from channelapp.worker.runner import Worker

__all__ = ["Worker"]
