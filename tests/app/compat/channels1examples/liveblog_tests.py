"""Tests of the liveblog example (examples/channels1/liveblog) as its Channels 1 project
would have written them with ``channels.test``, on the project's own routing."""

from __future__ import annotations

import json

from channelapp.compat.test import ChannelTestCase, WSClient
from posts.models import Liveblog, Post


class LiveblogTests(ChannelTestCase):
    def setUp(self) -> None:
        self.blog = Liveblog.objects.create(title="Launch day", slug="launch")

    def test_a_saved_post_reaches_the_blogs_sockets(self) -> None:
        reader = WSClient()
        reader.send_and_consume("websocket.connect", path="/liveblog/launch/stream/")
        post = Post.objects.create(liveblog=self.blog, body="We are live")
        notification = reader.receive()
        self.assertEqual(notification["id"], post.id)
        self.assertEqual(notification["html"], "<p>We are live</p>")
        self.assertIsNone(reader.receive())

    def test_a_post_written_over_the_socket_is_saved_and_sent(self) -> None:
        writer, reader = WSClient(), WSClient()
        for client in (writer, reader):
            client.send_and_consume("websocket.connect", path="/liveblog/launch/stream/")
        writer.send_and_consume(
            "websocket.receive", path="/liveblog/launch/stream/", text={"post": "Second"}
        )
        self.assertEqual(Post.objects.get().body, "Second")
        self.assertEqual(reader.receive()["html"], "<p>Second</p>")
        writer.send_and_consume("websocket.disconnect", path="/liveblog/launch/stream/")
        Post.objects.create(liveblog=self.blog, body="Third")
        self.assertEqual(reader.receive()["html"], "<p>Third</p>")
        self.assertEqual(writer.receive()["html"], "<p>Second</p>")
        self.assertIsNone(writer.receive())

    def test_an_unknown_blog_gets_an_error_and_a_close(self) -> None:
        client = WSClient()
        client.send_and_consume(
            "websocket.connect", path="/liveblog/nope/stream/", check_accept=False
        )
        reply = client.get_next_message(client.reply_channel)
        self.assertEqual(reply.content, {"text": json.dumps({"error": "bad_slug"}), "close": True})
        self.assertIsNone(client.receive())
