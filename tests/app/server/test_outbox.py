"""The per-socket outbox: bounded in messages and bytes, one message always fits."""

from __future__ import annotations

import asyncio

from channelapp.server.outbox import Outbox


def text(n: int) -> dict[str, object]:
    return {"type": "websocket.send", "text": "x" * n}


async def test_bounded_by_messages_and_bytes() -> None:
    box = Outbox(max_messages=3, max_bytes=100)
    assert box.put(text(10)) and box.put(text(10)) and box.put(text(10))
    assert not box.put(text(1))  # a fourth message
    assert len(box) == 3 and box.bytes == 30
    assert await box.get() == text(10)
    assert box.bytes == 20
    assert not box.put(text(81))  # 101 bytes
    assert box.put(text(80))


async def test_one_message_fits_whatever_its_size() -> None:
    box = Outbox(max_messages=1, max_bytes=10)
    assert box.put({"type": "websocket.send", "bytes": b"y" * 1000})
    assert not box.put(text(1))


async def test_get_waits_for_a_put() -> None:
    box = Outbox(max_messages=10, max_bytes=1000)
    waiting = asyncio.create_task(box.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    box.put(text(5))
    assert await asyncio.wait_for(waiting, 1) == text(5)
