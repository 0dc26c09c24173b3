"""Channels 1.x's ``AsgiHandler.encode_response``: a Django response as HTTP reply messages.

Channels 1's own HTTP consumers used it to answer with Django responses::

    def http_consumer(message):
        response = HttpResponse("Hello")
        for chunk in AsgiHandler.encode_response(response):
            message.reply_channel.send(chunk)

The Django request handler itself is not here: channelapp serves Django's views
through Django's ASGI application (``django:SETTINGS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _bytes(value: Any, encoding: str) -> bytes:
    return value.encode(encoding) if isinstance(value, str) else bytes(value)


class AsgiHandler:
    chunk_size = 512 * 1024

    @classmethod
    def encode_response(cls, response: Any) -> Iterator[dict[str, Any]]:
        """The Channels 1 messages of a Django ``HttpResponse`` (or streaming response)."""
        headers = [
            [_bytes(name, "ascii"), _bytes(value, "latin-1")] for name, value in response.items()
        ]
        for cookie in response.cookies.values():
            headers.append([b"Set-Cookie", cookie.output(header="").strip().encode("ascii")])
        message: dict[str, Any] = {"status": response.status_code, "headers": headers}
        if response.streaming:
            for part in response:
                for chunk, _last in cls.chunk_bytes(part):
                    message.update(content=chunk, more_content=True)
                    yield message
                    message = {}
            message["more_content"] = False
            yield message
            return
        for chunk, last in cls.chunk_bytes(response.content):
            message.update(content=chunk, more_content=not last)
            yield message
            message = {}

    @classmethod
    def chunk_bytes(cls, data: bytes) -> Iterator[tuple[bytes, bool]]:
        """``data`` in pieces of at most ``chunk_size``, each with whether it is the last."""
        if not data:
            yield data, True
            return
        position = 0
        while position < len(data):
            yield data[position : position + cls.chunk_size], position + cls.chunk_size >= len(data)
            position += cls.chunk_size
