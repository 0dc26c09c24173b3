"""The protocol server under the names it has always been imported by.

:mod:`channelapp.server.protocol_server` holds the server, :mod:`channelapp.server.process`
its process (``serve_protocol``, ``run_protocol_async``, the stop signals).
"""

from channelapp.server.process import install_stop_signals, run_protocol_async, serve_protocol
from channelapp.server.protocol_server import ProtocolServer

__all__ = ["ProtocolServer", "install_stop_signals", "run_protocol_async", "serve_protocol"]
