"""Prometheus metrics of the protocol server and the worker (served by channelapp.health)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Protocol server
HTTP_REQUESTS = Counter("channelapp_http_requests_total", "HTTP requests answered", ["status"])
HTTP_LATENCY = Histogram(
    "channelapp_http_request_seconds",
    "Time from request to the first response message",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBSOCKETS_OPEN = Gauge("channelapp_websockets_open", "WebSocket connections open now")
WEBSOCKETS_TOO_SLOW = Counter(
    "channelapp_websockets_too_slow_total",
    "WebSockets closed with 1008 because their replies waiting passed the send buffer",
)
WEBSOCKETS_LOST_MESSAGES = Counter(
    "channelapp_websockets_lost_messages_total",
    "WebSockets closed with 1013 because their server's reply list was full and they lost a message",
)
LAYER_STATE_LOST = Counter(
    "channelapp_layer_state_lost_total",
    "Times a Redis shard was found to have lost its data (its sockets closed with 1012)",
)
LAYER_SENDS = Counter(
    "channelapp_layer_sends_total", "Messages sent to the channel layer", ["channel"]
)
LAYER_SEND_FAILURES = Counter(
    "channelapp_layer_send_failures_total", "Sends refused by the layer", ["channel", "reason"]
)
# Worker
MESSAGES_HANDLED = Counter(
    "channelapp_messages_handled_total", "Messages handled by consumers", ["channel", "outcome"]
)
HANDLER_LATENCY = Histogram(
    "channelapp_handler_seconds",
    "Consumer handling time",
    ["channel"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
IN_FLIGHT = Gauge("channelapp_messages_in_flight", "Messages being handled now")
