"""A chat app and a job channel of the Channels 1 project, as Channels 1 code wrote them."""

from __future__ import annotations

import json
from typing import Any

from channelapp.compat import Channel, Group, route
from channelapp.compat.exceptions import DenyConnection, WebsocketCloseException
from channelapp.compat.message import Message
from channelapp.compat.sessions import channel_session, enforce_ordering


@channel_session
def chat_connect(message: Message, room: str) -> None:
    if room == "closed":
        raise DenyConnection
    message.channel_session["room"] = room
    message.channel_session["sent"] = 0
    Group(f"chat-{room}").add(message.reply_channel)  # type: ignore[arg-type]
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


@channel_session
def chat_receive(message: Message) -> None:
    data = json.loads(message["text"])
    if data.get("command") == "leave":
        raise WebsocketCloseException(4001)
    room = message.channel_session["room"]
    message.channel_session["sent"] += 1
    Group(f"chat-{room}").send(
        {
            "text": json.dumps(
                {"room": room, "message": data["message"], "sent": message.channel_session["sent"]}
            )
        }
    )


@channel_session
def chat_disconnect(message: Message) -> None:
    Group(f"chat-{message.channel_session['room']}").discard(message.reply_channel)  # type: ignore[arg-type]


def make_thumbnail(message: Message) -> dict[str, Any]:
    """A background job: the result goes to another channel, the receipt to the sender."""
    Channel("thumbnails.done").send({"id": message["id"], "size": message["size"] // 2})
    message.reply_channel.send({"status": "queued", "id": message["id"]})  # type: ignore[union-attr]
    return {"id": message["id"]}


@enforce_ordering
def ordered_echo(message: Message) -> None:
    message.channel_session.setdefault("seen", [])
    message.channel_session["seen"] = [*message.channel_session["seen"], message["order"]]
    message.reply_channel.send({"text": json.dumps(message.channel_session["seen"])})  # type: ignore[union-attr]


def echo_query(message: Message) -> None:
    message.reply_channel.send(  # type: ignore[union-attr]
        {
            "text": json.dumps(
                {
                    "path": message["path"],
                    "query_string": message.content.get("query_string", b"").decode(),
                }
            )
        }
    )


chat_routing = [
    route("websocket.connect", chat_connect, path=r"^/chat/(?P<room>[a-z]+)/$"),
    route("websocket.receive", chat_receive, path=r"^/chat/[a-z]+/$"),
    route("websocket.disconnect", chat_disconnect, path=r"^/chat/[a-z]+/$"),
]

job_routing = [route("thumbnails.make", make_thumbnail)]
