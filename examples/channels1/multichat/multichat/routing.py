from channelapp.compat import include

# The channel routing defines what channels get handled by what consumers, including
# optional matching on message attributes. Here we match on a path prefix, and then
# include routing from the chat module.
channel_routing = [
    # Include sub-routing from an app.
    include("chat.routing.websocket_routing", path=r"^/chat/stream"),
    # Custom handler for message sending (see Room.send_message). Can't go in the include
    # above as its messages have no `path` attribute to match on.
    include("chat.routing.custom_routing"),
    # Every HTTP request goes to Django's views (nothing here routes http.request).
]
