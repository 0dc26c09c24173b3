"""Tests of the multichat example (examples/channels1/multichat) as its Channels 1 project
would have written them with ``channels.test``: the socket's JSON commands go onto the
custom ``chat.receive`` channel, whose consumers the test runs in turn."""

from __future__ import annotations

from channelapp.compat.test import ChannelTestCase, WSClient
from chat.models import Room
from chat.settings import MSG_TYPE_ENTER, MSG_TYPE_MESSAGE
from django.contrib.auth.models import User


class MultichatTests(ChannelTestCase):
    def setUp(self) -> None:
        self.room = Room.objects.create(title="Lobby")
        self.staff_room = Room.objects.create(title="Staff", staff_only=True)

    def logged_in(self, username: str) -> WSClient:
        client = WSClient()
        client.force_login(User.objects.create_user(username))
        client.send_and_consume("websocket.connect", path="/chat/stream/")
        return client

    def command(self, client: WSClient, **payload: object) -> None:
        client.send_and_consume("websocket.receive", path="/chat/stream/", text=payload)
        client.consume("chat.receive")

    def test_join_then_send_reaches_the_room(self) -> None:
        alice, bob = self.logged_in("alice"), self.logged_in("bob")
        self.command(alice, command="join", room=self.room.id)
        self.assertEqual(alice.receive(), {"join": str(self.room.id), "title": "Lobby"})
        self.command(bob, command="join", room=self.room.id)
        entered = {"room": str(self.room.id), "message": None, "username": "bob"}
        self.assertEqual(alice.receive(), {**entered, "msg_type": MSG_TYPE_ENTER})
        self.assertEqual(bob.receive(), {"join": str(self.room.id), "title": "Lobby"})

        self.command(bob, command="send", room=self.room.id, message="hello")
        said = {"room": str(self.room.id), "message": "hello", "username": "bob"}
        self.assertEqual(alice.receive(), {**said, "msg_type": MSG_TYPE_MESSAGE})
        self.assertEqual(bob.receive(), {**said, "msg_type": MSG_TYPE_MESSAGE})
        self.assertIsNone(alice.receive())

    def test_the_rooms_rules_are_replies_to_the_client(self) -> None:
        anonymous = WSClient()
        anonymous.send_and_consume("websocket.connect", path="/chat/stream/")
        self.command(anonymous, command="join", room=self.room.id)
        self.assertEqual(anonymous.receive(), {"error": "USER_HAS_TO_LOGIN"})

        alice = self.logged_in("alice")
        self.command(alice, command="join", room=self.staff_room.id)
        self.assertEqual(alice.receive(), {"error": "ROOM_ACCESS_DENIED"})
        self.command(alice, command="send", room=self.room.id, message="not joined")
        self.assertEqual(alice.receive(), {"error": "ROOM_ACCESS_DENIED"})
        self.command(alice, command="join", room=9999)
        self.assertEqual(alice.receive(), {"error": "ROOM_INVALID"})

    def test_leaving_stops_the_rooms_messages(self) -> None:
        alice, bob = self.logged_in("alice"), self.logged_in("bob")
        for client in (alice, bob):
            self.command(client, command="join", room=self.room.id)
        self.command(alice, command="leave", room=self.room.id)
        while alice.receive(json=False) is not None:
            pass
        self.command(bob, command="send", room=self.room.id, message="still there?")
        self.assertIsNone(alice.receive())
        messages = []
        while (received := bob.receive()) is not None:
            messages.append(received)
        self.assertEqual(messages[-1]["message"], "still there?")
