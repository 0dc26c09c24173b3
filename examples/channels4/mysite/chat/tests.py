"""The chat's tests, as a Channels project writes them, on channelapp's channel layer:
``channels.testing.WebsocketCommunicator`` on both consumers, an ``ApplicationCommunicator``
on the background channel, and ``ChannelsLiveServerTestCase`` (a live daphne server) with
two WebSocket clients. ``MYSITE_TEST_REDIS`` names the Redis server::

    MYSITE_TEST_REDIS=redis://127.0.0.1:6379 python manage.py test chat
"""

import asyncio
import json
import os

import aiohttp
from channels.layers import get_channel_layer
from channels.testing import (
    ApplicationCommunicator,
    ChannelsLiveServerTestCase,
    WebsocketCommunicator,
)
from django.test import SimpleTestCase, override_settings
from mysite.asgi import application

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channelapp.channels.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("MYSITE_TEST_REDIS", "redis://127.0.0.1:6379")],
            "prefix": "mysite-tests",
        },
    }
}
ORIGIN = (b"origin", b"http://localhost")


@override_settings(CHANNEL_LAYERS=CHANNEL_LAYERS, ALLOWED_HOSTS=["localhost"])
class ChatConsumerTests(SimpleTestCase):
    async def chat_in(self, path):
        one = WebsocketCommunicator(application, path, headers=[ORIGIN])
        two = WebsocketCommunicator(application, path, headers=[ORIGIN])
        for communicator in (one, two):
            connected, _ = await communicator.connect(timeout=5)
            self.assertTrue(connected)
        await one.send_json_to({"message": "hello"})
        for communicator in (one, two):
            self.assertEqual(await communicator.receive_json_from(timeout=5), {"message": "hello"})
        await one.disconnect()
        await two.disconnect()

    async def test_async_consumer(self):
        await self.chat_in("/ws/chat/tests/")

    async def test_sync_consumer(self):
        await self.chat_in("/ws/syncchat/tests/")

    async def test_other_origin_refused(self):
        communicator = WebsocketCommunicator(
            application, "/ws/chat/tests/", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await communicator.connect(timeout=5)
        self.assertFalse(connected)

    async def test_background_channel(self):
        communicator = ApplicationCommunicator(
            application, {"type": "channel", "channel": "thumbnails"}
        )
        await communicator.send_input(
            {"type": "thumbnail.make", "id": "t1", "seconds": 0, "reply_to": "tests.done"}
        )
        done = await asyncio.wait_for(get_channel_layer().receive("tests.done"), 5)
        self.assertEqual(done, {"type": "thumbnail.done", "id": "t1"})
        await communicator.send_input({"type": "thumbnail.make", "id": "t2", "seconds": 0})
        done = await asyncio.wait_for(get_channel_layer().receive("thumbnails.done"), 5)
        self.assertEqual(done["id"], "t2")
        with self.assertRaises(asyncio.TimeoutError):
            await communicator.receive_output(timeout=0.1)  # it sends nothing back itself


@override_settings(CHANNEL_LAYERS=CHANNEL_LAYERS)
class ChatLiveServerTests(ChannelsLiveServerTestCase):
    def test_two_clients_chat(self):
        async def chat():
            url = f"{self.live_server_ws_url}/ws/chat/live/"
            headers = {"Origin": self.live_server_url}
            async with aiohttp.ClientSession() as http:
                one = await http.ws_connect(url, headers=headers)
                two = await http.ws_connect(url, headers=headers)
                await asyncio.sleep(0.2)
                await two.send_str(json.dumps({"message": "live"}))
                for ws in (one, two):
                    self.assertEqual(await ws.receive_json(timeout=5), {"message": "live"})
                await one.close()
                await two.close()

        asyncio.run(chat())

    def test_room_page(self):
        async def page():
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{self.live_server_url}/chat/live/") as response:
                    return response.status, await response.text()

        status, text = asyncio.run(page())
        self.assertEqual(status, 200)
        self.assertIn("/ws/chat/", text)
