"""The Channels 1 project's own tests, written against Channels 1's ``channels.test`` API
with only the import changed (``channels.test`` -> ``channelapp.compat.test``); run by
``django-admin test`` in tests/app/compat/test_compat_test.py."""

from __future__ import annotations

import json

from channelapp.compat import Group, route
from channelapp.compat.exceptions import DenyConnection
from channelapp.compat.test import ChannelTestCase, Client, HttpClient, WSClient, apply_routes
from django.conf import settings
from django.contrib.auth.models import User

from tests.app.compat.channels1project.chat import (
    chat_connect,
    chat_routing,
    echo_query,
    job_routing,
    make_thumbnail,
    ordered_echo,
)


class ProjectRoutingTests(ChannelTestCase):
    """The project's routing (CHANNEL_LAYERS["default"]["ROUTING"]), with Django's users."""

    def test_the_logged_in_user_reaches_the_sockets_later_messages(self) -> None:
        User.objects.create_user("alice", password="a-password")
        client = WSClient()
        self.assertTrue(client.login(username="alice", password="a-password"))
        client.send_and_consume("websocket.connect", path="/user/")
        client.send_and_consume("websocket.receive", path="/user/", text={"hello": 1})
        self.assertEqual(client.receive(), {"user": "alice"})
        self.assertIsNone(client.receive())

    def test_a_failed_login_leaves_the_socket_anonymous(self) -> None:
        User.objects.create_user("alice", password="a-password")
        client = WSClient()
        self.assertFalse(client.login(username="alice", password="wrong"))
        client.send_and_consume("websocket.connect", path="/user/")
        client.send_and_consume("websocket.receive", path="/user/", text="hi")
        self.assertEqual(client.receive(), {"user": ""})

    def test_force_login_and_a_generic_consumer(self) -> None:
        client = WSClient()
        client.force_login(User.objects.create_user("bob"))
        client.send_and_consume("websocket.connect", path="/generic/")
        client.send_and_consume("websocket.receive", path="/generic/", text={"n": 1})
        self.assertEqual(client.receive(), {"user": "bob", "got": {"n": 1}})
        self.assertEqual(client.receive(), None)

    def test_an_http_consumer_answers_with_a_django_response(self) -> None:
        client = HttpClient()
        client.force_login(User.objects.create_user("carol"))
        client.send_and_consume("http.request", {"method": "GET"}, path="/whoami/")
        response = client.receive()
        self.assertEqual(response["status"], 200)
        self.assertIn([b"Set-Cookie", b"seen=yes; Path=/"], response["headers"])
        self.assertEqual(
            json.loads(response["content"]),
            {"user": "carol", "authenticated": True, "has_http_session": True},
        )

    def test_the_session_cookie_goes_with_the_first_message_only(self) -> None:
        client = WSClient()
        client.set_cookie("theme", "dark")
        client.set_header("origin", "https://chat.example")
        with self.assertRaisesMessage(ValueError, "Use set_cookie method"):
            client.set_header("cookie", "a=b")
        client.send("websocket.connect", path="/user/")
        first = self.get_next_message("websocket.connect", require=True)
        headers = dict((name, value) for name, value in first["headers"])
        self.assertEqual(headers[b"origin"], b"https://chat.example")
        cookie = headers[b"cookie"].decode()
        self.assertIn("theme=dark", cookie)
        self.assertIn(f"{settings.SESSION_COOKIE_NAME}={client.session.session_key}", cookie)
        client.send("websocket.receive", text="x", path="/user/")
        later = self.get_next_message("websocket.receive", require=True)
        self.assertEqual(
            dict(later["headers"]), {b"origin": b"https://chat.example", b"cookie": b"theme=dark"}
        )

    def test_a_message_no_route_takes_fails_consume(self) -> None:
        client = WSClient()
        with self.assertRaisesMessage(AssertionError, "Can't find consumer"):
            client.send_and_consume("websocket.connect", path="/nowhere/")
        self.assertIsNone(
            client.consume("websocket.connect", fail_on_none=False, check_accept=False)
        )
        with self.assertRaisesMessage(AssertionError, "No message for channel websocket.connect"):
            client.consume("websocket.connect")


@apply_routes([chat_routing, job_routing])
class ChatTests(ChannelTestCase):
    def connect(self, room: str = "lobby") -> WSClient:
        client = WSClient()
        client.send_and_consume("websocket.connect", path=f"/chat/{room}/")
        return client

    def say(self, client: WSClient, text: str, room: str = "lobby") -> None:
        client.send_and_consume("websocket.receive", path=f"/chat/{room}/", text={"message": text})

    def test_a_message_reaches_everyone_in_the_room(self) -> None:
        alice, bob, elsewhere = self.connect(), self.connect(), self.connect("garden")
        self.say(alice, "hi")
        expected = {"room": "lobby", "message": "hi", "sent": 1}
        self.assertEqual(alice.receive(), expected)
        self.assertEqual(bob.receive(), expected)
        self.assertIsNone(elsewhere.receive())
        self.assertIsNone(alice.receive())

    def test_the_channel_session_lives_as_long_as_the_socket(self) -> None:
        alice = self.connect()
        self.say(alice, "one")
        self.say(alice, "two")
        self.assertEqual(alice.receive()["sent"], 1)
        self.assertEqual(
            alice.receive(json=False), json.dumps({"room": "lobby", "message": "two", "sent": 2})
        )

    def test_a_socket_that_disconnects_leaves_the_room(self) -> None:
        alice, bob = self.connect(), self.connect()
        bob.send_and_consume("websocket.disconnect", path="/chat/lobby/")
        self.say(alice, "anyone?")
        self.assertEqual(alice.receive()["message"], "anyone?")
        self.assertIsNone(bob.receive())

    def test_leaving_closes_the_socket_with_a_code(self) -> None:
        alice = self.connect()
        alice.send_and_consume("websocket.receive", path="/chat/lobby/", text={"command": "leave"})
        self.assertEqual(alice.receive(), {"close": 4001})

    def test_a_closed_room_denies_the_connection(self) -> None:
        with self.assertRaises(DenyConnection):
            WSClient().send_and_consume("websocket.connect", path="/chat/closed/")

    def test_group_sends_read_back_in_channels_1s_shape(self) -> None:
        client = Client()
        client.join_group("news")
        Group("news").send({"text": "headline"})
        Group("news").send({"bytes": b"\x00\x01"})
        Group("news").send({"close": True})
        Group("news").send({"headline": "not a socket frame"})
        self.assertEqual(client.receive(), {"text": "headline"})
        self.assertEqual(client.receive(), {"bytes": b"\x00\x01"})
        self.assertEqual(client.receive(), {"close": True})
        self.assertEqual(client.receive(), {"headline": "not a socket frame"})
        self.assertIsNone(client.receive())

    def test_a_job_on_a_channel_of_its_own(self) -> None:
        client = Client()
        self.assertIs(client.get_consumer_by_channel("thumbnails.make"), make_thumbnail)
        self.assertEqual(
            client.send_and_consume("thumbnails.make", {"id": 7, "size": 100}), {"id": 7}
        )
        self.assertEqual(client.receive(), {"status": "queued", "id": 7})
        done = self.get_next_message("thumbnails.done", require=True)
        self.assertEqual(done.content, {"id": 7, "size": 50})
        self.assertEqual(done.channel.name, "thumbnails.done")
        self.assertIsNone(self.get_next_message("thumbnails.done"))
        with self.assertRaisesMessage(
            AssertionError, "Expected a message on channel thumbnails.done"
        ):
            self.get_next_message("thumbnails.done", require=True)


class ApplyRoutesTests(ChannelTestCase):
    def test_the_routes_apply_inside_the_block_only(self) -> None:
        client = Client()
        self.assertIsNone(client.get_consumer_by_channel("thumbnails.make"))
        with apply_routes([route("thumbnails.make", make_thumbnail)]):
            self.assertIs(client.get_consumer_by_channel("thumbnails.make"), make_thumbnail)
            with apply_routes(route("thumbnails.make", echo_query)):
                self.assertIs(client.get_consumer_by_channel("thumbnails.make"), echo_query)
            self.assertIs(client.get_consumer_by_channel("thumbnails.make"), make_thumbnail)
        self.assertIsNone(client.get_consumer_by_channel("thumbnails.make"))
        with self.assertRaisesMessage(AssertionError, "Can't find consumer"):
            client.send_and_consume("thumbnails.make", {"id": 1, "size": 2})

    @apply_routes(route("websocket.connect", chat_connect, path=r"^/chat/(?P<room>[a-z]+)/$"))
    def test_a_single_route_on_a_test_method(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/chat/lobby/")
        Group("chat-lobby").send({"text": json.dumps("welcome")})
        self.assertEqual(client.receive(), "welcome")

    @apply_routes([route("websocket.connect", echo_query), route("websocket.receive", echo_query)])
    def test_the_query_string_goes_with_the_connect_only(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/feed/?page=2&q=x", check_accept=False)
        self.assertEqual(client.receive(), {"path": "/feed/", "query_string": "page=2&q=x"})
        client.send_and_consume("websocket.receive", path="/feed/?page=2", text="")
        self.assertEqual(client.receive(), {"path": "/feed/", "query_string": ""})

    @apply_routes([route("websocket.receive", ordered_echo)])
    def test_an_ordered_client_numbers_its_messages(self) -> None:
        client = WSClient(ordered=True)
        for _ in range(3):
            client.send_and_consume("websocket.receive", text="x")
        self.assertEqual([client.receive() for _ in range(3)], [[0], [0, 1], [0, 1, 2]])
        with self.assertRaisesMessage(ValueError, 'Do not use "order" manually'):
            client.send("websocket.receive", {"order": 9})
        with self.assertRaisesMessage(ValueError, "No `order` value in message"):
            WSClient().send_and_consume("websocket.receive", text="x")
