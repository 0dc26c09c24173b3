"""Close codes the server puts on the wire, and the order numbers a socket's messages carry
when one of them could not be queued."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
from channelapp.layer import InMemoryChannelLayer
from channelapp.server.outbox import frame_over, reply_over
from channelapp.server.protocol import serve_protocol
from channelapp.server.websocket import wire_code
from channelapp.settings import Settings

from devtools.procs import free_port


def test_codes_reserved_for_local_use_are_never_sent() -> None:
    assert [wire_code(c) for c in (1005, 1006, 1015)] == [1011, 1011, 1011]
    assert [wire_code(c) for c in (1000, 1001, 1009, 1011, 1012, 1013, 4000)] == [
        1000, 1001, 1009, 1011, 1012, 1013, 4000,
    ]  # fmt: skip


async def test_a_frame_the_layer_refused_leaves_no_gap_in_the_order() -> None:
    """The second frame finds websocket.receive full: the socket is closed 1013 and its
    disconnect takes the refused frame's number, so the worker waits for nothing."""
    settings = dataclasses.replace(Settings(), allowed_origins=["*"], channel_capacity=1)
    layer = InMemoryChannelLayer(capacity=1)
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(
        serve_protocol(settings, layer, "127.0.0.1", port, ready=ready, stop=stop)
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with aiohttp.ClientSession() as http:
            connecting = asyncio.create_task(http.ws_connect(f"http://127.0.0.1:{port}/ws/"))
            connect = await asyncio.wait_for(layer.receive("websocket.connect"), 10)
            await layer.send(connect["reply_channel"], {"type": "websocket.accept"})
            sock = await connecting
            await sock.send_str("one")  # queued: order 1
            await sock.send_str("two")  # refused: the channel holds its one message
            closed = await sock.receive(timeout=10)
            assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1013), closed
            first = await asyncio.wait_for(layer.receive("websocket.receive"), 10)
            disconnect = await asyncio.wait_for(layer.receive("websocket.disconnect"), 10)
        assert (first["text"], first["order"]) == ("one", 1)
        assert disconnect["order"] == 2
    finally:
        stop.set()
        await asyncio.wait_for(server, 20)
        await layer.close()


def test_frame_limits_count_text_in_utf8_bytes() -> None:
    assert not frame_over("a" * 10, 10) and frame_over("a" * 11, 10)
    assert not frame_over("é" * 5, 10) and frame_over("é" * 6, 10)  # 2 bytes each
    assert not frame_over("€" * 3, 10) and frame_over("€" * 4, 10)  # 3 bytes each
    assert not frame_over(b"x" * 10, 10) and frame_over(b"x" * 11, 10)
    assert reply_over({"type": "websocket.send", "text": "é" * 6}, 10)
    assert not reply_over({"type": "websocket.close", "code": 1000}, 10)
