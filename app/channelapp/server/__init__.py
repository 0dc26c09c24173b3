"""The aiohttp protocol server."""

from channelapp.server.process import run_protocol_async, serve_protocol
from channelapp.server.protocol_server import ProtocolServer

__all__ = ["ProtocolServer", "run_protocol_async", "serve_protocol"]
