import json

from channelapp.compat import Channel
from channelapp.compat.auth import channel_session_user, channel_session_user_from_http

from .exceptions import ClientError
from .models import Room
from .settings import MSG_TYPE_ENTER, MSG_TYPE_LEAVE, NOTIFY_USERS_ON_ENTER_OR_LEAVE_ROOMS
from .utils import catch_client_error, get_room_or_error

### WebSocket handling ###


# This decorator copies the user from the HTTP session (only available in
# websocket.connect or http.request messages) to the channel session (available in all
# consumers with the same reply_channel, so all three here)
@channel_session_user_from_http
def ws_connect(message):
    message.reply_channel.send({"accept": True})
    # Initialise their session
    message.channel_session["rooms"] = []


# Unpacks the JSON in the received WebSocket frame and puts it onto a channel of its own
# with a few attributes extra so we can route it. This doesn't need @channel_session_user
# as the next consumer will have that, and we preserve message.reply_channel (which
# that's based on).
def ws_receive(message):
    payload = json.loads(message["text"])
    payload["reply_channel"] = message.content["reply_channel"]
    Channel("chat.receive").send(payload)


@channel_session_user
def ws_disconnect(message):
    # Unsubscribe from any connected rooms
    for room_id in message.channel_session.get("rooms", set()):
        try:
            room = Room.objects.get(pk=room_id)
            # Removes us from the room's send group. If this doesn't get run, we'll get
            # removed once the group membership expires.
            room.websocket_group.discard(message.reply_channel)
        except Room.DoesNotExist:
            pass


### Chat channel handling ###


# channel_session_user loads the user out from the channel session and presents it as
# message.user, which works just like request.user would.
@channel_session_user
@catch_client_error
def chat_join(message):
    # Find the room they requested (by ID) and add ourselves to the send group
    room = get_room_or_error(message["room"], message.user)

    # Send a "enter message" to the room if available
    if NOTIFY_USERS_ON_ENTER_OR_LEAVE_ROOMS:
        room.send_message(None, message.user, MSG_TYPE_ENTER)

    # OK, add them in. The websocket_group is what we'll send messages to so that
    # everyone in the chat room gets them.
    room.websocket_group.add(message.reply_channel)
    message.channel_session["rooms"] = list(set(message.channel_session["rooms"]).union([room.id]))
    # Send a message back that will prompt them to open the room. Done server-side so
    # that we could, for example, make people join rooms automatically.
    message.reply_channel.send(
        {
            "text": json.dumps(
                {
                    "join": str(room.id),
                    "title": room.title,
                }
            ),
        }
    )


@channel_session_user
@catch_client_error
def chat_leave(message):
    # Reverse of join - remove them from everything.
    room = get_room_or_error(message["room"], message.user)

    # Send a "leave message" to the room if available
    if NOTIFY_USERS_ON_ENTER_OR_LEAVE_ROOMS:
        room.send_message(None, message.user, MSG_TYPE_LEAVE)

    room.websocket_group.discard(message.reply_channel)
    message.channel_session["rooms"] = list(
        set(message.channel_session["rooms"]).difference([room.id])
    )
    # Send a message back that will prompt them to close the room
    message.reply_channel.send(
        {
            "text": json.dumps(
                {
                    "leave": str(room.id),
                }
            ),
        }
    )


@channel_session_user
@catch_client_error
def chat_send(message):
    # Check that the user in the room
    if int(message["room"]) not in message.channel_session["rooms"]:
        raise ClientError("ROOM_ACCESS_DENIED")
    # Find the room they're sending to, check perms
    room = get_room_or_error(message["room"], message.user)
    # Send the message along
    room.send_message(message["message"], message.user)
