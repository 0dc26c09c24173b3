"""The aiohttp protocol server."""

from channelapp.server.protocol import ProtocolServer, run_protocol_async, serve_protocol

__all__ = ["ProtocolServer", "run_protocol_async", "serve_protocol"]
