"""Tests that must fail, each the way Channels 1's test client failed it: the wrapper in
tests/app/compat/test_compat_test.py runs them and checks each one's failure."""

from __future__ import annotations

from channelapp.compat import Channel, route
from channelapp.compat.message import Message
from channelapp.compat.test import ChannelTestCase, WSClient, apply_routes


def silent_connect(message: Message) -> None:
    """Neither accepts nor rejects."""


def text_and_bytes(message: Message) -> None:
    message.reply_channel.send({"text": "a", "bytes": b"b"})  # type: ignore[union-attr]


@apply_routes(
    [
        route("websocket.connect", silent_connect),
        route("websocket.receive", text_and_bytes),
    ]
)
class MustFail(ChannelTestCase):
    def test_1_leaves_a_message_behind(self) -> None:
        Channel("leftover").send({"from": "test 1"})
        self.assertIsNotNone(self.get_next_message("leftover"))
        Channel("leftover").send({"from": "test 1"})

    def test_2_sees_the_message_of_test_1(self) -> None:
        self.assertIsNotNone(self.get_next_message("leftover"), "each test has a layer of its own")

    def test_3_a_connect_nobody_accepts(self) -> None:
        WSClient().send_and_consume("websocket.connect", path="/")

    def test_4_a_message_that_never_came(self) -> None:
        self.get_next_message("never.sent", require=True)

    def test_5_a_reply_channelapp_would_refuse(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.receive", text="x")
        client.receive()
